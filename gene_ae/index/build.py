"""Building an index directory from a stream of records: sequences stored, records and their windows
embedded, k-mers counted, one batch at a time, in shards (gene_ae/index/parallel.py builds them on Ray)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from gene_ae.core.bagvec import BagTables
from gene_ae.core.bar import progress
from gene_ae.core.batches import by_bases, group_ends
from gene_ae.core.embedding import Embed
from gene_ae.core.features import FeatureColumns
from gene_ae.core.records import InputRecord
from gene_ae.core.windows import window_starts
from gene_ae.index.collection import Collection, next_shard_name, read_shards_file, write_shards_file, writing
from gene_ae.index.directory import Entry, IndexMeta, IndexWriter, read_meta, write_index
from gene_ae.index.kmer_index import KmerIndexBuilder, KmerIndexConfig, choose_k
from gene_ae.index.order import vector_order

CHUNK_BASES = 1 << 20  # embed_local hands the encoder about this many bases at a time, and moves its bar
# `gene-ae embed` starts a new shard after this many bases (128 Mi, about 9 x 10^4 genes), so that building
# holds one shard's k-mer counts and vectors at a time (peak ~3 GiB, docs/BENCHMARKS.md) whatever the size
# of the collection; a search answers over all shards as one index would.
SHARD_BASES = 1 << 27


def embed_local(
    encoder, pieces: list[np.ndarray], batch_size: int, features: Mapping[str, Sequence] | None = None
) -> np.ndarray:
    """Encoder.embed_tokens about CHUNK_BASES bases at a time, with a bar by bases on a terminal. A piece longer
    than that is one step: the Encoder takes no progress callback, so a 9 Mb record moves the bar once, while
    its windows (a second call) move it every CHUNK_BASES."""
    sizes = [int(p.size) for p in pieces]
    out, start = [], 0
    with progress("vectors", sum(sizes)) as bar:
        for end in group_ends(sizes, CHUNK_BASES):
            part = {k: v[start:end] for k, v in features.items()} if features is not None else None
            out.append(encoder.embed_tokens(pieces[start:end], batch_size, features=part))
            bar.update(sum(sizes[start:end]))
            start = end
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


@dataclass
class LocalEmbed:
    """embed_local as an Embed that also embeds spans of sequences in one call (Encoder.embed_spans): a batch's
    records and their half-overlapping windows share one pass over each record's k-mers when the model's
    vector is k-mer bags alone, where embedding each window as its own piece looked every base up 2-3x."""

    encoder: Any
    batch_size: int = 64

    def __call__(self, pieces: list[np.ndarray], features: Mapping[str, Sequence] | None = None) -> np.ndarray:
        return embed_local(self.encoder, pieces, self.batch_size, features)

    def spans(
        self, seqs: list[np.ndarray], spans: np.ndarray, features: Mapping[str, Sequence] | None = None
    ) -> np.ndarray:
        """[len(spans), dim]: the vector of seqs[o][a:b] for each row (o, a, b); features: one value per span.
        About CHUNK_BASES bases of records at a time, with a bar by bases on a terminal as embed_local's."""
        sizes = [int(s.size) for s in seqs]
        out = np.zeros((len(spans), self.encoder.dim), np.float32)
        start = 0
        with progress("vectors", sum(sizes)) as bar:
            for end in group_ends(sizes, CHUNK_BASES):
                rows = np.flatnonzero((spans[:, 0] >= start) & (spans[:, 0] < end))
                part = {k: [v[i] for i in rows] for k, v in features.items()} if features is not None else None
                local = spans[rows] - np.array([start, 0, 0])
                out[rows] = self.encoder.embed_spans(seqs[start:end], local, self.batch_size, features=part)
                bar.update(sum(sizes[start:end]))
                start = end
        return out


@dataclass
class BuildConfig:
    kind: str = "auto"  # faiss index kind of the record vectors: auto, flat, ivf, hnsw
    windows: bool = True  # also index windows of records at least window_min long (and longer than the model window)
    stride: int = 0  # window stride; 0 = half a window
    kmers: KmerIndexConfig = field(default_factory=KmerIndexConfig)
    # False: no exact k-mer index (postings), only the vectors, their windows and the sequences: an index searched
    # vector-first (engine.vector_first), 64 bytes and the compressed bases a record
    sparse: bool = True
    batch_bases: int = 1 << 21  # records are read, embedded and stored this many bases at a time
    batch_size: int = 64  # encoder batch size
    features: dict[str, str] = field(default_factory=dict)  # the user's features to store: name -> kind
    codec: str = "pq64"  # how record and window vectors are stored (index/vectors.py CODECS)
    # Shorter records are found by their record vector and the exact k-mers: at 10^5 genes window vectors changed
    # no recall (1.00 / 1.00 / 0.92 at 10 / 20 / 30 % with or without them) and took 70 % of the index.
    window_min: int = 4096


@dataclass(kw_only=True)
class ModelInfo:
    uri: str
    version: str
    dim: int
    window: int
    features: tuple[str, ...] = ()  # the features its vector takes (Encoder.required_features)
    # its vector as numpy tables (Encoder.bag_tables), written into shard 0 (the others: `later_shard`) of an
    # index without k-mers, which a search reads by vector: a query embedded from them never imports torch
    bags: BagTables | None = None

    def later_shard(self) -> ModelInfo:
        """The model as every shard after the first is written with: the tables once an index, in shard 0."""
        return replace(self, bags=None)


def build_index(
    records: Iterable[InputRecord],
    embed: Embed,
    model: ModelInfo,
    out_dir: str | Path,
    cfg: BuildConfig,
    overwrite: bool = False,
    source: str = "input",
) -> IndexMeta:
    """Stream records into an index directory (gene_ae/index/directory.py): memory is one batch of records
    plus the index itself (vectors, k-mer postings), never the collection's sequences."""
    with write_index(out_dir, overwrite) as writer:
        return write_shard(records, embed, model, writer, cfg, source)


@dataclass(frozen=True)
class ShardLimits:
    """Where an index is cut into index shards: after `records` records or `bases` bases, whichever comes first
    (0: no such limit; both 0: one shard; a shard holds at least one record)."""

    records: int = 0
    bases: int = 0

    def __post_init__(self) -> None:
        if self.records < 0 or self.bases < 0:
            raise ValueError(f"shard sizes must be >= 0, got {self.records} records, {self.bases} bases")


ONE_SHARD = ShardLimits()  # no limit: the whole index in one shard


def build_collection(
    records: Iterable[InputRecord],
    embed: Embed,
    model: ModelInfo,
    out_dir: str | Path,
    cfg: BuildConfig,
    limits: ShardLimits = ONE_SHARD,
    overwrite: bool = False,
    source: str = "input",
) -> list[IndexMeta]:
    """build_index in index shards (gene_ae/index/collection.py) cut at `limits`: shard 0 in out_dir, the others
    beside it, all with shard 0's resolved settings (k-mer size, stride), written as one."""
    with write_index(out_dir, overwrite) as writer:
        metas: list[IndexMeta] = []
        for directory, part in index_shards(writer, records, limits):
            shard_writer = IndexWriter(directory) if metas else writer
            shard_model = model.later_shard() if metas else model
            metas.append(write_shard(part, embed, shard_model, shard_writer, settings_of(metas[0]) if metas else cfg,
                                     source))  # fmt: skip
        list_shards(writer)
    return metas


def index_shards(
    writer: IndexWriter, records: Iterable[InputRecord], limits: ShardLimits
) -> Iterator[tuple[Path, Iterator[InputRecord]]]:
    """The one shard loop of an index build (here and index/parallel.py): each index shard's directory and its
    records (take_shard), shard 0 in the index directory, shard-NNNNN beside it. Each shard's records must be read
    before the next shard is asked for (they share the stream). The caller lists the shards (list_shards) once
    every one is written: shards.json holds their digests, and Ray tasks may still be writing the last."""
    stream = iter(records)
    yield writer.dir, take_shard(stream, limits)
    names: list[str] = []
    while (first := next(stream, None)) is not None:
        names.append(f"shard-{len(names) + 1:05d}")
        (writer.dir / names[-1]).mkdir()
        yield writer.dir / names[-1], take_shard(chain([first], stream), limits)


def list_shards(writer: IndexWriter) -> None:
    """shards.json for a build's shards beside shard 0 (none: no list), once all of them are written."""
    names = sorted(p.name for p in writer.dir.glob("shard-*") if p.is_dir())
    if names:
        write_shards_file(writer.dir, names, [])


def take_shard(stream: Iterator[InputRecord], limits: ShardLimits) -> Iterator[InputRecord]:
    """The next records of `stream` up to the limits, at least one; what it has not taken stays in the stream."""
    taken = size = 0
    for r in stream:
        yield r
        taken, size = taken + 1, size + int(r.tokens.size)
        if (limits.records and taken >= limits.records) or (limits.bases and size >= limits.bases):
            return


def append_shard(
    records: Iterable[InputRecord],
    embed: Embed,
    out_dir: str | Path,
    source: str = "input",
    remove: Iterable[int] = (),
    features: Sequence[str] = (),
    locked: bool = False,
) -> IndexMeta:
    """Add records to an existing index as one more shard, built with the index's own settings; nothing
    already there is read again or rebuilt. The shard is written whole, then listed in shards.json in one
    write with the `remove` positions (records it replaces), so a reader sees the old set or the new one.
    `locked`: the caller holds the writer lock already (`writing`: it chose `remove` under it)."""
    base = read_meta(out_dir)
    model = ModelInfo(uri=base.model_uri, version=base.model_version, dim=base.dim, window=base.window,
                      features=tuple(features))  # fmt: skip
    directory = Path(out_dir)
    with contextlib.nullcontext() if locked else writing(directory):
        names, removed = read_shards_file(directory)
        name = next_shard_name(directory)
        with write_index(directory / name, overwrite=False) as writer:
            meta = write_shard(records, embed, model, writer, settings_of(base), source)
        write_shards_file(directory, [*names, name], {*removed, *remove})
    return meta


def remove_records(out_dir: str | Path, ids: Iterable[str]) -> int:
    """Mark every record with one of these ids removed (search never returns it again); returns how many.
    An id the index does not hold is an error naming it."""
    with writing(out_dir):
        collection = Collection.open(out_dir)
        wanted = set(ids)
        ids = collection.entries.ids
        positions = [j for j, i in enumerate(ids) if i in wanted and not collection.removed[j]]
        found = {ids[j] for j in positions}
        if wanted - found:
            raise ValueError(f"{out_dir}: no record {sorted(wanted - found)[0]!r} to remove (or removed already)")
        names, removed = read_shards_file(Path(out_dir))
        write_shards_file(Path(out_dir), names, sorted({*removed, *positions}))
    return len(positions)


def _embed(embed: Embed, model: ModelInfo, pieces: list[np.ndarray], owners: Sequence[InputRecord]) -> np.ndarray:
    """embed(pieces), with each piece's record's features when the model's vector takes some."""
    features = _span_features(model, owners)
    return embed(pieces) if features is None else embed(pieces, features=features)


def _span_features(model: ModelInfo, owners: Sequence[InputRecord]) -> dict[str, list] | None:
    """Each piece's record's value of every feature the model's vector takes; None when it takes none."""
    return {n: [r.features.get(n) for r in owners] for n in model.features} if model.features else None


def _window_spans(batch: Sequence[InputRecord], window: int, stride: int, shortest: int = 0) -> np.ndarray:
    """[n, 3] (record in batch, start, end) of the windows of the batch's records longer than `window` and at
    least `shortest` bases long (-1: none)."""
    if shortest < 0:
        return np.zeros((0, 3), np.int64)
    spans = [
        (i, int(a), min(int(a) + window, r.tokens.size))
        for i, r in enumerate(batch)
        if r.tokens.size > window and r.tokens.size >= shortest
        for a in window_starts(int(r.tokens.size), window, stride)
    ]
    return np.array(spans, dtype=np.int64).reshape(-1, 3)


def settings_of(meta: IndexMeta) -> BuildConfig:
    """The BuildConfig an index was built with (resolved: its k-mer size and stride), for more shards."""
    raw = dict(meta.settings)
    if not raw:
        raise ValueError("this index records no build settings (made by an older gene-ae): rebuild it")
    return BuildConfig(**{**raw, "kmers": KmerIndexConfig(**raw["kmers"])})


def resolve(cfg: BuildConfig, first_lengths: Sequence[int], window: int) -> BuildConfig:
    """cfg with what it leaves to the data fixed: the k-mer size from the lengths of the first batch of records
    (kmer_index.choose_k) and the window stride from the model window. Every shard of an index is built with
    the settings shard 0 resolved, so the shards of one index agree whoever builds them."""
    k = cfg.kmers.k or choose_k(float(np.median(first_lengths)) if len(first_lengths) else 0.0)
    return replace(cfg, stride=cfg.stride or max(window // 2, 1), kmers=replace(cfg.kmers, k=k))


def first_batch(records: Sequence[InputRecord], bases: int) -> Sequence[InputRecord]:
    """The records write_shard resolves the settings from: its first batch of `bases` bases."""
    return next(by_bases(records, _bases, bases), [])


def write_shard(
    records: Iterable[InputRecord], embed: Embed, model: ModelInfo, writer: IndexWriter, cfg: BuildConfig, source: str
) -> IndexMeta:
    """One index directory (a shard) from a stream of records, through `writer`: memory is one batch of
    records plus the shard's index."""
    meta = IndexMeta(
        model_uri=model.uri, model_version=model.version, dim=model.dim, kind=cfg.kind, windows=cfg.windows,
        window=model.window, sparse=cfg.sparse, sequences=True, features=dict(cfg.features),
    )  # fmt: skip
    feature_rows: list[dict] = []
    rows: list[Entry] = []
    tmp = writer.dir
    store = writer.sequences()
    try:
        kmers: KmerIndexBuilder | None = None
        resolved = False
        windows: list[tuple[int, int, int]] = []
        done = progress("embed")  # the collection's bases, a batch of records at a time (a stream: no total)
        with done, open(tmp / "vectors.f32", "wb") as vec_out, open(tmp / "windows.f32", "wb") as win_out:
            for batch in by_bases(records, _bases, cfg.batch_bases):
                if not resolved:  # k from the first batch's lengths
                    cfg, resolved = resolve(cfg, [r.tokens.size for r in batch], model.window), True
                    kmers = KmerIndexBuilder(cfg.kmers) if cfg.sparse else None
                first = len(rows)
                for r in batch:
                    n = int(r.tokens.size)
                    pos = store.add(r.tokens)
                    rows.append(Entry(id=r.id, length=n, label=r.label, start=0, end=n))
                    if kmers is not None:
                        kmers.add(pos, r.tokens)
                    if cfg.features:
                        feature_rows.append(r.features)
                spans = _window_spans(batch, model.window, cfg.stride, cfg.window_min if cfg.windows else -1)
                if isinstance(embed, LocalEmbed):  # records and windows in one pass
                    whole = np.array([(i, 0, r.tokens.size) for i, r in enumerate(batch)], dtype=np.int64)
                    both = np.concatenate([whole, spans])
                    feats = _span_features(model, [batch[o] for o in both[:, 0]])
                    vecs = embed.spans([r.tokens for r in batch], both, features=feats)
                    _write(vec_out, vecs[: len(batch)])
                    _write(win_out, vecs[len(batch) :])
                else:
                    _write(vec_out, _embed(embed, model, [r.tokens for r in batch], batch))
                    if len(spans):
                        owners = [batch[o] for o in spans[:, 0]]
                        pieces = [r.tokens[a:b] for r, (_, a, b) in zip(owners, spans)]
                        _write(win_out, _embed(embed, model, pieces, owners))
                windows += [(first + int(o), int(a), int(b)) for o, a, b in spans]
                done.update(sum(int(r.tokens.size) for r in batch))
        if not rows:
            raise ValueError(f"{source}: no sequences to embed")

        def vectors() -> str:
            kind = writer.record_vectors(_read(tmp / "vectors.f32", model.dim), cfg.kind, cfg.codec)
            if windows:
                spans = np.array(windows, dtype=np.int64)
                writer.window_vectors(_read(tmp / "windows.f32", model.dim), spans, cfg.kind, cfg.codec)
            for name in ("vectors.f32", "windows.f32"):
                (tmp / name).unlink()
            return kind

        # faiss's training beside the k-mer index's finish: they share nothing, faiss releases Python's lock, and
        # the finish is mostly one thread (the transposes; the bisection's halves take two): SILVA's 100,000-gene val
        # split built in 0.89x the time (46.7 -> 41.8 s, paired), its peak 2,708 -> 3,002 MiB (faiss's sample held
        # while the postings transpose)
        # A pool that waits, not core.threads' in_threads: this thread writes into the staging folder, which a
        # Ctrl-C removes only once the thread is done, so nothing it writes outlives the removal.
        if kmers is None:
            order = vector_order(_read(tmp / "vectors.f32", model.dim))  # before vectors() lets the file go
            meta.kind = vectors()
            store.close(order)  # near vectors side by side: a query's candidates in few blocks
            meta.settings = asdict(cfg)
        else:
            with ThreadPoolExecutor(1, thread_name_prefix="gene-ae-vectors") as pool:
                coded = pool.submit(vectors)
                kmer_index = kmers.finish()
                meta.kind = coded.result()
            store.close(kmers.record_order)  # relatives side by side: zstd stores them in less
            writer.kmers(kmer_index)
            meta.settings = asdict(replace(cfg, kmers=kmer_index.cfg))
        meta.windows = bool(windows)
        if cfg.features:
            writer.features(FeatureColumns.from_rows(cfg.features, feature_rows))
        if model.bags is not None and not cfg.sparse:
            writer.bag_tables(model.bags)
        writer.finish(meta, rows)
        return meta
    finally:
        store.discard()  # the staged bases' file closed, written or not (the staging folder goes on a failure)


def _bases(record: InputRecord) -> int:
    return int(record.tokens.size)


def _write(f, vectors: np.ndarray) -> None:
    f.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())


def _read(path: Path, dim: int) -> np.ndarray:
    """The vectors written to `path`, mapped rather than read: faiss copies what it keeps (a quarter of it
    with sq8), so the float32 matrix (2 KiB a window) never has to sit in memory beside it."""
    if path.stat().st_size == 0:
        return np.zeros((0, dim), np.float32)
    return np.memmap(path, dtype=np.float32, mode="r").reshape(-1, dim)
