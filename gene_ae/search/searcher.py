"""`Searcher`: an index opened for searching, the one object `gene-ae search`, `serve --index` and library
callers go through.

It owns what a search needs beyond the engine: the collection (every shard), the encoder (loaded only when a
candidate list that reads vectors is asked for, so a k-mer search never imports torch), the provenance check
(the encoder's vectors of a few stored records equal the index's), the features the model's vector takes,
query checks and the --collection override of the stored sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from gene_ae.index.collection import Collection
from gene_ae.search import checks, engine, genomes
from gene_ae.search.genomes import GenomeConfig, GenomeMatch
from gene_ae.search.progress import Progress, locked
from shard_tools.declared import DeclaredFeature

VECTOR_SOURCES = ("dense", "windows")  # the candidate lists that need the model's vectors of the query


@dataclass
class Searcher:
    """An opened index. `model`: a model URI to use instead of the one the index records; `batch_size`: the
    encoder's."""

    collection: Collection
    model: str | None = None
    batch_size: int = 64
    shown: str = ""  # how errors name the index (the path as typed)
    _encoder: tuple | None = field(default=None, repr=False)
    _bags: tuple | None = field(default=None, repr=False)  # (the index's bag tables or None,), once read

    @classmethod
    def open(cls, index: str | Path, model: str | None = None, batch_size: int = 64) -> Searcher:
        return cls(Collection.open(index), model, batch_size, str(index))

    @property
    def meta(self):
        return self.collection.meta

    def default_sources(self) -> tuple[str, ...]:
        """The candidate lists a search reads unless told: the exact k-mers, or the record vectors (a vector-first
        search) where the index holds no k-mer index (`gene-ae embed --no-kmers`)."""
        return engine.default_sources(self.meta.sparse)

    def uses_model(self, sources: Sequence[str]) -> bool:
        """Whether these candidate lists read the query's vectors (every index holds record vectors; window
        vectors only some)."""
        return "dense" in sources or ("windows" in sources and self.meta.windows)

    def _embed(self, sources: Sequence[str]):
        """The model's embed function when these lists read vectors, else None (torch never loaded): from the
        index's own bag tables when it holds them and no other model was asked for (torch never loaded either)."""
        if not self.uses_model(sources):
            return None
        tables = self._tables()
        return tables if tables is not None else self.encoder()[1]

    def _tables(self):
        """The index's bag tables (gene_ae/core/bagvec.py) when it holds them and --model did not name another
        model, checked once as the model would be (their vectors of a few stored records are the index's)."""
        if self._bags is None:
            self._bags = (index_tables(self.collection.shards[0], self.model, self.shown),)
        return self._bags[0]

    def encoder(self):
        """(encoder, embed), loaded once: the model the index was built with unless `model` was given, refused in
        one line when its vectors are not the index's (dim, or re-embedded records)."""
        if self._encoder is None:
            self._encoder = open_encoder(self.collection.shards[0], self.model, self.batch_size, self.shown)
        return self._encoder

    def required_features(self, declared: Mapping[str, str], where: str, sources: Sequence[str]) -> tuple[str, ...]:
        """The features the model's vector takes (each must be declared by the queries), when vectors are used."""
        if not self.uses_model(sources) or self._tables() is not None:  # bag tables: a model without features
            return ()
        return self.encoder()[0].check_features(declared, where)

    def check_queries(self, queries: Sequence, source: str) -> None:
        checks.check_queries(self.collection.shards[0], queries, source)

    def search(
        self,
        queries: Sequence,
        cfg: engine.SearchConfig,
        allowed: np.ndarray | None = None,
        features: Mapping[str, Sequence] | None = None,
        subject: engine.Subject | None = None,
        progress: Progress | None = None,
        threads: int = 1,
    ) -> list[list[engine.Hit]]:
        """Ranked hits for each query record (an InputRecord: .id, .tokens); `progress`: told the bases searched;
        `threads`: queries searched at once (the hits are the same)."""
        embed = self._embed(cfg.sources)
        tokens = [q.tokens for q in queries]
        return engine.search(self.collection, tokens, embed, cfg, subject, allowed, features, progress, threads)

    def genome(
        self,
        name: str,
        contigs: Sequence,
        cfg: engine.SearchConfig,
        genome_cfg: GenomeConfig,
        allowed: np.ndarray | None = None,
        features: Mapping[str, Sequence] | None = None,
        subject: engine.Subject | None = None,
        progress: Progress | None = None,
        threads: int = 1,
    ) -> list[GenomeMatch]:
        """The subject genomes closest to the genome `name`, its contigs (records: .tokens) together, by ANI and
        aligned fractions (gene_ae/search/genomes.py); each contig searched alone, every region of its candidates
        traced (engine.each_region). `features`: one value per contig; `progress`: told the bases searched;
        `threads`: contigs searched at once (the same answer)."""
        embed = self._embed(cfg.sources)
        subjects = genomes.Subjects.of(self.collection, genome_cfg.subject_feature, allowed)
        progress = locked(progress) if threads > 1 else progress

        def regions(i: int) -> Iterator[engine.Hit]:
            given = {n: [v[i]] for n, v in features.items()} if features else None
            return engine.each_region(self.collection, contigs[i].tokens, embed, cfg, subject, allowed, given,
                                      progress)  # fmt: skip

        return genomes.compare(name, [c.tokens.size for c in contigs], regions, subjects, genome_cfg, threads)


def open_encoder(shard0, model: str | None, batch_size: int, shown: str):
    """(encoder, embed) for searching an index whose first shard is `shard0`: the model it was built with unless
    `model` is given, refused in one line when its vectors are not the index's (dim, or re-embedded records;
    `shown` names the index)."""
    from gene_ae.model.encoder import Encoder

    meta = shard0.meta
    model_uri = model or meta.model_uri  # the exact version the index was built with, unless asked
    encoder = Encoder.load(model_uri)
    if encoder.dim != meta.dim:
        raise ValueError(f"{model_uri}: vectors of dim {encoder.dim}, the index's are {meta.dim}: {_which(meta)}")
    embed = partial(encoder.embed_tokens, batch_size=batch_size)
    check_agreement(shard0, embed, model_uri, shown)
    return encoder, embed


def index_tables(shard0, model: str | None, shown: str):
    """The index's bag tables (gene_ae/core/bagvec.py), checked as a model is (their vectors of a few stored
    records are the index's), when it holds them and `model` names no other model; else None (`gene-ae search` and
    `serve --index` alike)."""
    tables = shard0.bag_tables() if model is None else None
    if tables is not None:
        check_agreement(shard0, tables, shard0.meta.model_uri, shown)
    return tables


def check_agreement(shard0, embed, model_uri: str, shown: str) -> None:
    """Refuse in one line a model (or the index's bag tables) whose vectors of a few stored records are not the
    index's."""
    cosine = checks.model_agreement(shard0, embed)
    if cosine < checks.SAME_MODEL_COSINE:
        raise ValueError(
            f"{model_uri}: its vectors of records stored in {shown} differ from the index's (cosine "
            f"{cosine:.3f} < {checks.SAME_MODEL_COSINE}): not the model the index was built with; "
            f"{_which(shard0.meta)}"
        )


def search_model(shard0, model: str | None, batch_size: int):
    """The endpoint's Loader (gene_ae/search/serve_index.py): `gene-ae search`'s encoder and checks, and the
    features the model's vector takes; (None, ()) when the search it serves reads no vectors (the default: the
    exact k-mers), so nothing loads torch or the model; the index's bag tables when it holds them (an index built
    --no-kmers, searched by vector) and no other model is named. Module-level, so Ray pickles it by reference."""
    if not set(engine.default_sources(shard0.meta.sparse)) & set(VECTOR_SOURCES):
        if model:
            raise ValueError(f"--model {model}: the served search reads no vectors (the exact k-mers); leave it out")
        return None, ()
    tables = index_tables(shard0, model, str(shard0.path))
    if tables is not None:
        return tables, ()
    encoder, embed = open_encoder(shard0, model, batch_size, str(shard0.path))
    kinds = {f.name: f.kind for f in encoder.cfg.features}
    return embed, tuple(DeclaredFeature(n, kinds[n]) for n in encoder.required_features)


def _which(meta) -> str:
    return f"search with the model it was built with ({meta.model_uri}: leave --model out) or rebuild the index"


def collection_subject(path: str, collection: Collection, records: Callable[[str], object]) -> engine.Subject:
    """Record position -> tokens from a --collection file (`records(path)` reads it): every indexed record must
    be in it, with the length the index records and, when the index holds its sequences, the same bases: a
    collection that only shares the ids is refused."""
    entries = collection.entries
    wanted = set(entries.ids)
    seqs = {r.id: r.tokens for r in records(path) if r.id in wanted}
    missing = wanted - seqs.keys()
    if missing:
        raise ValueError(
            f"{path}: {len(missing):,} indexed records are not in it (e.g. {sorted(missing)[0]!r}); "
            "give the file the index was built from, or leave --collection out (the index holds its sequences)"
        )
    for j, e in enumerate(entries):
        tokens = seqs[e.id]
        same = tokens.size == e.length
        if same and all(s.sequences is not None for s in collection.shards):
            same = bool((collection.sequence(j) == tokens).all())
        if not same:
            raise ValueError(
                f"{path}: record {e.id!r} differs from the one indexed ({tokens.size:,} bases, the index "
                f"has {e.length:,}{'' if tokens.size != e.length else ' with other bases'}): not the collection the "
                "index was built from; leave --collection out (the index holds its sequences)"
            )
    return lambda j: seqs[entries.ids[j]]
