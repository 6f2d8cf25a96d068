"""The library behind `gene-ae eval`: how well each method finds relatives, side by side in one run.

Every method (the encoder, k-mer profiles, sourmash) answers the same questions on the same queries:
- mutation retrieval: does a mutated copy of a sequence find its original (recall@k per divergence)?
- label retrieval: are a sequence's nearest neighbours in the same family or genus (leave-one-out)?
- cross-set retrieval: does a gene from one species find its family in another species' genes?
- distance faithfulness: does similarity rank pairs the way alignment identity does (Spearman)?
- reconstruction (encoder only): how much of the input the decoder gives back.
`run_eval` runs them all and writes report.json, report.md and PNG plots (atomically), and logs them to
MLflow when given a run id.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy.stats import spearmanr

from gene_ae import align, baselines
from gene_ae.mutate import mutate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gene_ae.encoder import Encoder
    from shard_tools.inputs import ReaderConfig

DEFAULT_METHODS = ("gene-ae", "5-mer", "sourmash")
_KMER_NAME = re.compile(r"^(\d+)-mer$")


@dataclass
class EvalConfig:
    divergences: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.30)  # mutation events per base
    n_queries: int = 200  # sequences mutated per divergence (and reconstructed)
    seed: int = 0
    k_values: tuple[int, ...] = (1, 10)  # recall@k and precision@k
    spearman_pairs: int = 300  # random pairs, and about as many near pairs, for distance faithfulness
    window: int = 0  # reconstruction: bases compared per sequence; 0 = the encoder's window
    reconstruction_lengths: tuple[int, ...] = (256,)  # also report these shorter prefixes (capped at window)
    methods: tuple[str, ...] = DEFAULT_METHODS  # "gene-ae", "K-mer" (any K), "sourmash"
    sourmash_ksize: int = 21
    sourmash_scaled: int = 0  # 0 = pick from the collection's median length (baselines.auto_scaled)
    align_max_bases: int = 5000  # alignment identity compares at most this many leading bases of each sequence
    label_queries: int = 2000  # leave-one-out queries at most (sampled when the collection is larger)
    batch_size: int = 64  # encoder batch size
    rerank: int = 0  # also score each method with its top `rerank` hits re-ordered by alignment ("+align" rows)
    label_regex: str = ""  # group labels by this regex's first group (see clean_label); "" = labels as given


# ---------------------------------------------------------------------------------------------- methods


class SearchIndex(Protocol):
    """A searchable collection. Indices of -1 mean "no hit" (only sourmash returns them)."""

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class Method(Protocol):
    """What evaluation needs from a method: an index over a collection and a similarity for pairs."""

    name: str

    def index(self, refs: Sequence[np.ndarray]) -> SearchIndex: ...

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray: ...


class VectorIndex:
    """Exact cosine search over L2-normalised vectors (faiss IndexFlatIP, the index gene-ae search uses)."""

    def __init__(self, vectors: np.ndarray, embed: Callable[[Sequence[np.ndarray]], np.ndarray]):
        import faiss

        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.embed = embed
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
        sims, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return idx.astype(np.int64), sims

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_vectors(self.embed(queries), k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        idx, sims = self.search_vectors(self.vectors[positions], k + 1)
        return _drop_self(idx, sims, positions, min(k, self.index.ntotal - 1))


def _drop_self(idx: np.ndarray, sims: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own position (or, when ties pushed it out, the last column), keeping k columns."""
    drop = idx == positions[:, None]
    drop[~drop.any(1), -1] = True
    keep = ~drop
    rows = idx.shape[0]
    return idx[keep].reshape(rows, -1)[:, :k], sims[keep].reshape(rows, -1)[:, :k]


@dataclass
class EmbeddingMethod:
    """A method that maps sequences to L2-normalised vectors; embeddings are memoised by sequence content,
    so the collection is embedded once however many evaluations use it."""

    name: str
    embed_fn: Callable[[Sequence[np.ndarray]], np.ndarray]
    description: str = ""
    _cache: dict[bytes, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def embed(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        keys = [_digest(s) for s in seqs]
        missing = {k: s for k, s in zip(keys, seqs) if k not in self._cache}
        if missing:
            vectors = self.embed_fn(list(missing.values()))
            self._cache.update(zip(missing.keys(), np.asarray(vectors, dtype=np.float32)))
        if not keys:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._cache[k] for k in keys])

    def index(self, refs: Sequence[np.ndarray]) -> VectorIndex:
        return VectorIndex(self.embed(refs), self.embed)

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        return np.einsum("ij,ij->i", self.embed(a), self.embed(b))


@dataclass
class SourmashMethod:
    """sourmash FracMinHash with Jaccard similarity, searched by its own (exact, brute-force) index."""

    ksize: int = 21
    scaled: int = 10
    name: str = "sourmash"

    @property
    def description(self) -> str:
        return f"FracMinHash (sourmash), ksize={self.ksize}, scaled={self.scaled}, Jaccard similarity"

    def index(self, refs: Sequence[np.ndarray]) -> baselines.SourmashIndex:
        return baselines.SourmashIndex(refs, self.ksize, self.scaled)

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        return baselines.jaccard_pairs(
            baselines.sketch(a, self.ksize, self.scaled), baselines.sketch(b, self.ksize, self.scaled)
        )


class RerankedIndex:
    """A method's index whose top `top` hits are re-ordered by alignment identity to the query; the
    similarities returned are those identities (hits past `top`, and misses, score -1)."""

    def __init__(self, base: SearchIndex, refs: Sequence[np.ndarray], top: int, max_bases: int):
        self.base, self.refs, self.top, self.max_bases = base, refs, top, max_bases

    def _reorder(self, queries: Sequence[np.ndarray], idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx = idx.copy()
        sims = np.full(idx.shape, -1.0, dtype=np.float32)
        for row, query in enumerate(queries):
            head = idx[row, : self.top]
            valid = head[head >= 0]
            order, ident = align.rerank(query, [self.refs[i] for i in valid], self.max_bases)
            idx[row, : valid.size], sims[row, : valid.size] = valid[order], ident
        return idx[:, :k], sims[:, :k]

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, _ = self.base.search(queries, max(k, self.top))
        return self._reorder(queries, idx, k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, _ = self.base.self_search(positions, max(k, self.top))
        return self._reorder([self.refs[p] for p in positions], idx, k)


@dataclass
class RerankedMethod:
    """`base` for candidates, alignment for the order of its top hits: search as `gene-ae search --rerank`."""

    base: Method
    top: int = 10
    max_bases: int = align.MAX_BASES

    @property
    def name(self) -> str:
        return f"{self.base.name}+align"

    @property
    def description(self) -> str:
        return (
            f"{getattr(self.base, 'description', self.base.name)}; top {self.top} re-ordered by alignment "
            f"identity (edlib NW, first {self.max_bases:,} bases)"
        )

    def index(self, refs: Sequence[np.ndarray]) -> RerankedIndex:
        return RerankedIndex(self.base.index(refs), refs, self.top, self.max_bases)

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        return self.base.pair_similarity(a, b)


def _digest(tokens: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(tokens, dtype=np.uint8).tobytes(), digest_size=16).digest()


def build_methods(
    encoder: Encoder | None, cfg: EvalConfig, seqs: Sequence[np.ndarray]
) -> tuple[list[Method], dict[str, str]]:
    """The methods named in cfg.methods, and {name: why skipped} for those that cannot run here."""
    methods: list[Method] = []
    skipped: dict[str, str] = {}
    for name in cfg.methods:
        kmer = _KMER_NAME.match(name)
        if name == "gene-ae":
            if encoder is None:
                skipped[name] = "no encoder given"
                continue
            embed = partial(encoder.embed_tokens, batch_size=cfg.batch_size)
            methods.append(EmbeddingMethod(name, embed, f"gene-ae encoder {encoder.uri or '(in memory)'}, cosine"))
        elif kmer:
            k = int(kmer.group(1))
            methods.append(EmbeddingMethod(name, partial(baselines.kmer_profiles, k=k), f"{k}-mer counts, cosine"))
        elif name == "sourmash":
            if not baselines.is_available():
                skipped[name] = "sourmash is not installed (pip install 'gene-ae[baselines]')"
                continue
            scaled = cfg.sourmash_scaled or baselines.auto_scaled([s.size for s in seqs])
            methods.append(SourmashMethod(cfg.sourmash_ksize, scaled))
        else:
            raise ValueError(f"unknown method {name!r} (known: gene-ae, K-mer such as 5-mer, sourmash)")
    if cfg.rerank > 0:
        methods += [RerankedMethod(m, cfg.rerank, cfg.align_max_bases) for m in methods]
    return methods, skipped


# ------------------------------------------------------------------------------------------ evaluations


def mutation_retrieval(methods: Sequence[Method], seqs: Sequence[np.ndarray], cfg: EvalConfig) -> dict[str, Any]:
    """Mutate n_queries sequences at each divergence and query the copies against the originals.

    A hit is any of the top k whose sequence is identical to the query's source (so duplicates in the
    collection do not count as misses). Every method sees exactly the same mutated copies.
    """
    rng = np.random.default_rng(cfg.seed)
    sources = np.sort(rng.choice(len(seqs), size=min(cfg.n_queries, len(seqs)), replace=False))
    targets = _identical_members(seqs, sources)
    k_max = max(cfg.k_values)
    result: dict[str, Any] = {
        "divergences": list(cfg.divergences),
        "n_queries": int(sources.size),
        "query_indices": sources.tolist(),
        "methods": {},
    }
    copies = [_mutated_copies(seqs, sources, d, cfg.seed, i) for i, d in enumerate(cfg.divergences)]
    for method in methods:
        index = method.index(seqs)
        scores: dict[str, list[float]] = {f"recall@{k}": [] for k in cfg.k_values}
        for queries in copies:
            idx, _ = index.search(queries, k_max)
            for k in cfg.k_values:
                hits = [bool(np.isin(row[:k], t).any()) for row, t in zip(idx, targets)]
                scores[f"recall@{k}"].append(float(np.mean(hits)) if hits else math.nan)
        result["methods"][method.name] = scores
    return result


def _mutated_copies(
    seqs: Sequence[np.ndarray], sources: np.ndarray, divergence: float, seed: int, step: int
) -> list[np.ndarray]:
    """One copy per source, from a generator seeded by (seed, divergence step, source): reproducible alone."""
    return [mutate(seqs[i], divergence, np.random.default_rng([seed, step, int(i)])) for i in sources]


def _identical_members(seqs: Sequence[np.ndarray], positions: np.ndarray) -> list[np.ndarray]:
    """For each position, every collection index holding the same sequence (itself included)."""
    groups: dict[bytes, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(_digest(s), []).append(i)
    return [np.array(groups[_digest(seqs[i])]) for i in positions]


def label_retrieval(
    methods: Sequence[Method], seqs: Sequence[np.ndarray], labels: Sequence[str | None], cfg: EvalConfig
) -> dict[str, Any]:
    """Leave-one-out precision@k among labelled sequences: the fraction of a query's k nearest other
    sequences that share its label. Queries are the sequences whose label occurs at least twice (a label
    seen once cannot be retrieved); every labelled sequence stays in the collection. Chance is what
    random neighbours would score."""
    keep = [i for i, lab in enumerate(labels) if lab]
    lab = np.array([labels[i] for i in keep], dtype=object)
    counts = Counter(lab.tolist())
    queries = np.array([q for q in range(len(keep)) if counts[lab[q]] > 1], dtype=np.int64)
    if queries.size == 0:
        return {"skipped": "needs a label carried by at least two sequences"}
    subset = [seqs[i] for i in keep]
    rng = np.random.default_rng(cfg.seed)
    if queries.size > cfg.label_queries:
        queries = np.sort(rng.choice(queries, size=cfg.label_queries, replace=False))
    chance = float(np.mean([(counts[lab[q]] - 1) / (len(keep) - 1) for q in queries]))
    result: dict[str, Any] = {
        "n_sequences": len(keep),
        "n_labels": len(counts),
        "singletons_not_queried": sum(1 for c in counts.values() if c == 1),
        "n_queries": int(queries.size),
        "chance": chance,
        "methods": {},
    }
    for method in methods:
        idx, _ = method.index(subset).self_search(queries, max(cfg.k_values))
        result["methods"][method.name] = {
            f"precision@{k}": _precision(idx[:, :k], lab, lab[queries]) for k in cfg.k_values
        }
    return result


def _precision(idx: np.ndarray, ref_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean fraction of each row's neighbours that carry the query's label (-1, no hit, never matches)."""
    if idx.size == 0:
        return math.nan
    neighbour = np.where(idx >= 0, ref_labels[np.maximum(idx, 0)], None)
    return float(np.mean(neighbour == query_labels[:, None]))


def cross_set_retrieval(
    methods: Sequence[Method],
    query_seqs: Sequence[np.ndarray],
    query_labels: Sequence[str | None],
    ref_seqs: Sequence[np.ndarray],
    ref_labels: Sequence[str | None],
) -> dict[str, Any]:
    """Fraction of labelled queries (say, dog genes) whose nearest reference (chimp genes) shares the label."""
    q_keep = [i for i, lab in enumerate(query_labels) if lab]
    r_keep = [i for i, lab in enumerate(ref_labels) if lab]
    if not q_keep or not r_keep:
        return {"skipped": "needs labelled queries and labelled references"}
    q_lab = np.array([query_labels[i] for i in q_keep], dtype=object)
    r_lab = np.array([ref_labels[i] for i in r_keep], dtype=object)
    counts = Counter(r_lab.tolist())
    result: dict[str, Any] = {
        "n_queries": len(q_keep),
        "n_references": len(r_keep),
        "chance": float(np.mean([counts[q] / len(r_keep) for q in q_lab])),
        "methods": {},
    }
    refs, queries = [ref_seqs[i] for i in r_keep], [query_seqs[i] for i in q_keep]
    for method in methods:
        idx, _ = method.index(refs).search(queries, 1)
        result["methods"][method.name] = {"accuracy@1": _precision(idx, r_lab, q_lab)}
    return result


def distance_faithfulness(methods: Sequence[Method], seqs: Sequence[np.ndarray], cfg: EvalConfig) -> dict[str, Any]:
    """Spearman correlation between each method's similarity and alignment identity, so a positive value
    means the method ranks pairs as alignment does (equivalently, cosine distance vs identity is negative).

    Identity = 1 - edit distance / longer length (edlib, global NW) over the first align_max_bases of each
    sequence. Random pairs test the whole range; near pairs (a sequence vs its copies at every divergence)
    test the neighbourhood that search cares about.
    """
    if len(seqs) < 2:
        return {"skipped": "needs at least two sequences"}
    rng = np.random.default_rng([cfg.seed, 7])
    i = rng.integers(0, len(seqs), cfg.spearman_pairs)
    j = (i + rng.integers(1, len(seqs), cfg.spearman_pairs)) % len(seqs)  # never i itself
    random_pairs = ([seqs[x] for x in i], [seqs[y] for y in j])
    n_src = min(len(seqs), math.ceil(cfg.spearman_pairs / max(len(cfg.divergences), 1)))
    sources = np.sort(rng.choice(len(seqs), size=n_src, replace=False))
    near_a, near_b = [], []
    for step, d in enumerate(cfg.divergences):
        near_a += [seqs[x] for x in sources]
        near_b += _mutated_copies(seqs, sources, d, cfg.seed + 1, step)
    capped = any(s.size > cfg.align_max_bases for s in seqs)
    result: dict[str, Any] = {"align_max_bases": cfg.align_max_bases, "alignment_capped": capped, "methods": {}}
    identities = {}
    for kind, (a, b) in (("random", random_pairs), ("near", (near_a, near_b))):
        identities[kind] = align.pair_identities(a, b, cfg.align_max_bases)
        result[f"{kind}_pairs"] = len(a)
        result[f"{kind}_identity_mean"] = float(np.mean(identities[kind]))
    for method in methods:
        if isinstance(method, RerankedMethod):  # its pair similarity is its base method's
            continue
        result["methods"][method.name] = {
            f"spearman_{kind}": _spearman(method.pair_similarity(a, b), identities[kind])
            for kind, (a, b) in (("random", random_pairs), ("near", (near_a, near_b)))
        }
    return result


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho, NaN when either side is constant (no ranking to compare)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def reconstruction(encoder: Encoder, seqs: Sequence[np.ndarray], cfg: EvalConfig) -> dict[str, Any]:
    """Per-base accuracy and bits per base of the decoder over the first `window` bases of n_queries
    sequences (and over shorter prefixes): real bases only, padding and specials excluded. Equal to
    comparing `encoder.reconstruct_tokens` with the input, but batched, and with the logits for bits."""
    window = min(cfg.window or encoder.window, encoder.window)
    lengths = sorted({min(n, window) for n in cfg.reconstruction_lengths} | {window})
    rng = np.random.default_rng([cfg.seed, 11])
    picks = np.sort(rng.choice(len(seqs), size=min(cfg.n_queries, len(seqs)), replace=False))
    result: dict[str, Any] = {"window": window, "n_sequences": int(picks.size), "by_length": {}}
    for length in lengths:
        correct = bits = count = 0.0
        prefixes = [seqs[i][:length] for i in picks]
        for batch in _batches(prefixes, cfg.batch_size):
            c, b, n = _reconstruct_batch(encoder, batch)
            correct, bits, count = correct + c, bits + b, count + n
        result["by_length"][str(length)] = {
            "accuracy": correct / count if count else math.nan,
            "bits_per_base": bits / count if count else math.nan,
            "bases": int(count),
        }
    result["accuracy"] = result["by_length"][str(window)]["accuracy"]
    result["bits_per_base"] = result["by_length"][str(window)]["bits_per_base"]
    return result


def _batches(items: Sequence[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _reconstruct_batch(encoder: Encoder, batch: list[np.ndarray]) -> tuple[float, float, float]:
    """(correct bases, total bits, real bases) for one batch."""
    rec = encoder.reconstruct_windows(batch, batch_size=len(batch))
    return float(rec.correct), rec.nats / math.log(2), float(rec.bases)


# -------------------------------------------------------------------------------------------- reporting


def run_eval(
    encoder: Encoder | None,
    seqs: Sequence[np.ndarray],
    ids: Sequence[str],
    labels: Sequence[str | None] | None,
    cfg: EvalConfig,
    out_dir: str | Path,
    mlflow_run_id: str | None = None,
    *,
    cross_queries: tuple[Sequence[np.ndarray], Sequence[str | None]] | None = None,
) -> dict[str, Any]:
    """Run every evaluation with every method side by side; write report.json, report.md,
    recall_vs_divergence.png and embedding_map.png (when labels exist) to out_dir; log to MLflow.

    cross_queries = (sequences, labels) from another set (dog genes against these chimp genes) adds
    cross-set retrieval. encoder=None evaluates the baselines alone. Returns the report dict.
    """
    if not seqs:
        raise ValueError("nothing to evaluate: no sequences")
    if len(ids) != len(seqs) or (labels is not None and len(labels) != len(seqs)):
        raise ValueError(f"{len(seqs)} sequences but {len(ids)} ids and {len(labels or [])} labels")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods, skipped = build_methods(encoder, cfg, seqs)
    pattern = re.compile(cfg.label_regex) if cfg.label_regex else None
    labels = [clean_label(lab, pattern) for lab in labels] if labels is not None else [None] * len(seqs)
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "model": (encoder.uri or "(in-memory encoder)") if encoder is not None else None,
        "dataset": _summary(seqs, labels),
        "methods": {m.name: getattr(m, "description", "") for m in methods},
        "skipped_methods": skipped,
        "timings_s": {},
    }
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("mutation_retrieval", lambda: mutation_retrieval(methods, seqs, cfg)),
        ("label_retrieval", lambda: label_retrieval(methods, seqs, labels, cfg)),
        ("distance_faithfulness", lambda: distance_faithfulness(methods, seqs, cfg)),
    ]
    if cross_queries is not None:
        q_seqs, q_labels = cross_queries[0], [clean_label(lab, pattern) for lab in cross_queries[1]]
        steps.append(("cross_set_retrieval", lambda: cross_set_retrieval(methods, q_seqs, q_labels, seqs, labels)))
    if encoder is not None:
        steps.append(("reconstruction", lambda: reconstruction(encoder, seqs, cfg)))
    for name, step in steps:
        start = time.perf_counter()
        report[name] = step()
        report["timings_s"][name] = round(time.perf_counter() - start, 3)
    report["mutation_retrieval"]["query_ids"] = [ids[i] for i in report["mutation_retrieval"]["query_indices"]]
    report["notes"] = _notes(report, cfg)
    paths = _write_outputs(report, methods, seqs, labels, out)
    if mlflow_run_id:
        log_to_mlflow(mlflow_run_id, report, paths)
    return report


def _summary(seqs: Sequence[np.ndarray], labels: Sequence[str | None]) -> dict[str, Any]:
    lengths = np.array([s.size for s in seqs])
    labelled = [lab for lab in labels if lab]
    return {
        "n_sequences": len(seqs),
        "distinct_sequences": len({_digest(s) for s in seqs}),
        "length_min": int(lengths.min()),
        "length_median": float(np.median(lengths)),
        "length_max": int(lengths.max()),
        "total_bases": int(lengths.sum()),
        "n_labelled": len(labelled),
        "n_labels": len(set(labelled)),
    }


def _notes(report: dict[str, Any], cfg: EvalConfig) -> list[str]:
    notes = [
        "Mutation: gene_ae.mutate (per base, 80 % substitutions, 20 % indels of 1-3 bases); a hit is any of "
        "the top k identical to the query's source.",
        "Distance faithfulness is Spearman(similarity, alignment identity): higher is better.",
    ]
    if report["distance_faithfulness"].get("alignment_capped"):
        notes.append(
            f"Alignment identity compares only the first {cfg.align_max_bases:,} bases of each sequence "
            "(edlib on whole long genomes is too slow); similarities use the whole sequences."
        )
    if report["dataset"]["n_sequences"] <= max(cfg.k_values):
        notes.append(
            f"The collection has only {report['dataset']['n_sequences']} sequences: recall@{max(cfg.k_values)} "
            "counts every sequence that scores above zero, so it says little."
        )
    if "sourmash" in report["methods"]:
        notes.append(f"sourmash: {report['methods']['sourmash']}; queries sharing no hash count as misses.")
    notes += [f"{name} skipped: {why}" for name, why in report["skipped_methods"].items()]
    return notes


def _write_outputs(
    report: dict[str, Any],
    methods: Sequence[Method],
    seqs: Sequence[np.ndarray],
    labels: Sequence[str | None],
    out: Path,
) -> list[Path]:
    paths = [out / "report.json", out / "report.md", out / "recall_vs_divergence.png"]
    _atomic_write(paths[0], json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    _atomic_write(paths[1], render_markdown(report))
    _atomic_savefig(plot_recall(report["mutation_retrieval"]), paths[2])
    embedders = [m for m in methods if isinstance(m, EmbeddingMethod)]
    embedder = next((m for m in embedders if m.name == "gene-ae"), embedders[0] if embedders else None)
    if embedder is not None and sum(1 for lab in labels if lab) >= 2:
        paths.append(out / "embedding_map.png")
        _atomic_savefig(plot_embedding_map(embedder.embed(seqs), labels, embedder.name), paths[-1])
    return paths


def _jsonable(obj: Any) -> Any:
    """NaN to null (strict JSON) and numpy scalars to Python ones."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _atomic_write(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_savefig(fig: Figure, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: one table per evaluation, one row per method."""
    ds = report["dataset"]
    parts = [
        "# gene-ae evaluation",
        f"Model: `{report.get('model') or 'none (baselines only)'}`. "
        f"{ds['n_sequences']:,} sequences ({ds['distinct_sequences']:,} distinct), lengths {ds['length_min']:,}"
        f"-{ds['length_max']:,} (median {ds['length_median']:,.0f}), {ds['n_labelled']:,} labelled "
        f"({ds['n_labels']} labels).",
        "## Methods\n" + _table(["method", "what"], [[k, v] for k, v in report["methods"].items()]),
    ]
    mr = report["mutation_retrieval"]
    ks = [key for key in next(iter(mr["methods"].values()), {})]
    for key in ks:
        header = ["method"] + [f"d={d:g}" for d in mr["divergences"]]
        rows = [[name] + scores[key] for name, scores in mr["methods"].items()]
        parts.append(f"## Mutation retrieval: {key} ({mr['n_queries']} queries)\n" + _table(header, rows))
    parts += [_section_table(report, name, title) for name, title in _SECTIONS if name in report]
    if "reconstruction" in report:
        rec = report["reconstruction"]
        rows = [[length, v["accuracy"], v["bits_per_base"], v["bases"]] for length, v in rec["by_length"].items()]
        parts.append(
            f"## Reconstruction (gene-ae, {rec['n_sequences']} sequences)\n"
            + _table(["first bases", "accuracy", "bits/base", "bases"], rows)
        )
    parts.append("## Notes\n" + "\n".join(f"- {n}" for n in report.get("notes", [])))
    return "\n\n".join(parts) + "\n"


_SECTIONS = (
    ("label_retrieval", "Label retrieval (leave-one-out)"),
    ("cross_set_retrieval", "Cross-set retrieval"),
    ("distance_faithfulness", "Distance faithfulness (Spearman of similarity vs alignment identity)"),
)


def _section_table(report: dict[str, Any], name: str, title: str) -> str:
    section = report[name]
    if "skipped" in section:
        return f"## {title}\nSkipped: {section['skipped']}."
    keys = list(next(iter(section["methods"].values()), {}))
    rows = [[m] + [scores[k] for k in keys] for m, scores in section["methods"].items()]
    facts = ", ".join(f"{k} {_fmt(v)}" for k, v in section.items() if k != "methods")
    return f"## {title}\n{facts}\n\n" + _table(["method"] + keys, rows)


def plot_recall(mr: dict[str, Any]) -> Figure:
    """Recall@1 (solid) and the largest recall@k (dashed) against divergence, one colour per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    divs = [100 * d for d in mr["divergences"]]
    for n, (name, scores) in enumerate(mr["methods"].items()):
        colour = f"C{n}"
        ax.plot(divs, scores.get("recall@1", []), "o-", color=colour, label=f"{name} recall@1")
        far = [k for k in scores if k != "recall@1"]
        if far:
            ax.plot(divs, scores[far[-1]], "s--", color=colour, alpha=0.6, label=f"{name} {far[-1]}")
    ax.set(xlabel="divergence (%)", ylabel="recall", ylim=(-0.02, 1.02), title="Mutated copy finds its original")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_embedding_map(vectors: np.ndarray, labels: Sequence[str | None], name: str, top: int = 10) -> Figure:
    """First two principal components, coloured by the `top` most common labels (the rest grey)."""
    from matplotlib.figure import Figure

    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([centred[:, 0], np.zeros(len(centred))])
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    common = [lab for lab, _ in Counter(lab for lab in labels if lab).most_common(top)]
    other = np.array([lab not in common for lab in labels])
    ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgrey", label="other / unlabelled" if other.any() else None)
    for n, lab in enumerate(common):
        sel = np.array([x == lab for x in labels])
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=f"C{n % 10}", label=str(lab))
    ax.set(xlabel="PC 1", ylabel="PC 2", title=f"{name} embeddings (PCA)")
    ax.legend(fontsize=7, markerscale=2, title=f"label ({len(common)} most common)", title_fontsize=7)
    return fig


def metrics_for_mlflow(report: dict[str, Any]) -> dict[str, float]:
    """Flat eval/<method>/<metric> names (MLflow allows no '@') to finite values."""
    out: dict[str, float] = {}
    mr = report.get("mutation_retrieval", {})
    for name, scores in mr.get("methods", {}).items():
        for key, values in scores.items():
            for d, v in zip(mr["divergences"], values):
                out[f"eval/{name}/{key.replace('@', '_at_')}/d{d:g}"] = v
    for section in ("label_retrieval", "cross_set_retrieval", "distance_faithfulness"):
        for name, scores in report.get(section, {}).get("methods", {}).items():
            for key, v in scores.items():
                out[f"eval/{name}/{key.replace('@', '_at_')}"] = v
    rec = report.get("reconstruction")
    if rec:
        out["eval/gene-ae/reconstruction_accuracy"] = rec["accuracy"]
        out["eval/gene-ae/reconstruction_bits_per_base"] = rec["bits_per_base"]
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def log_to_mlflow(run_id: str, report: dict[str, Any], paths: Sequence[Path]) -> None:
    """Metrics in one batch, and the report files under the run's eval/ artifacts."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in metrics_for_mlflow(report).items()]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path="eval")


# ---------------------------------------------------------------------------------------------- inputs


_LABEL = re.compile(r"(?:^|[\s;])label=([^\s;]+)")
_GENUS = re.compile(r"tax=[^\s;]*?\bg:([^,;\s]+)")


MISSING_LABELS = frozenset({"", "unlabelled", "unlabeled", "unknown", "na", "n/a", "none", "nan"})


def clean_label(label: str | None, pattern: re.Pattern[str] | None = None) -> str | None:
    """A label as eval groups it: placeholders like `unlabelled` are missing, not a class of their own;
    with `pattern`, its first group (or whole match) names the group and a label it misses is missing."""
    if label is None or label.strip().lower() in MISSING_LABELS:
        return None
    if pattern is None:
        return label
    found = pattern.search(label)
    return (found.group(1) if found.groups() else found.group(0)) if found else None


def parse_label(header: str) -> str | None:
    """A label from a FASTA header: `label=VALUE`, else the genus of a `tax=...,g:GENUS` field."""
    found = _LABEL.search(header) or _GENUS.search(header)
    return found.group(1) if found else None


@dataclass
class EvalInput:
    ids: list[str]
    seqs: list[np.ndarray]
    labels: list[str | None]


def load_eval_input(path: str | Path, reader_cfg: ReaderConfig | None = None, split: str = "val") -> EvalInput:
    """Sequences to evaluate: a shard folder (its `split`) or a FASTA/FASTQ/TSV file. Labels come from the
    table's label column or the shards' metadata, else from the header (`parse_label`)."""
    from shard_tools.inputs import ReaderConfig, read_records
    from shard_tools.reader import read_shards

    data = EvalInput([], [], [])
    p = Path(path)
    if p.is_dir():
        for rid, tokens, meta in read_shards(p, split):
            data.ids.append(rid)
            data.seqs.append(tokens)
            data.labels.append(meta.get("label") or parse_label(f"{rid} {meta.get('desc', '')}"))
        return data
    for rec in read_records(p, reader_cfg or ReaderConfig()):
        data.ids.append(rec.id)
        data.seqs.append(rec.tokens)
        data.labels.append(rec.fields.get("label") or parse_label(f"{rec.id} {rec.description}"))
    return data
