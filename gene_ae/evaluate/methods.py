"""The methods evaluation compares, behind one interface: an index over a collection and a pair similarity.

Every search here returns (indices, similarities), best first, the order gene_ae.index.search uses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gene_ae.core.topk import top_k
from gene_ae.evaluate import baselines
from gene_ae.evaluate.config import EvalConfig
from gene_ae.evaluate.search_method import NAME as SEARCH
from gene_ae.evaluate.search_method import SearchMethod
from gene_ae.index import vectors as index
from gene_ae.search import engine as search

if TYPE_CHECKING:
    from gene_ae.model.encoder import Encoder

_KMER_NAME = re.compile(r"^(\d+)-mer(?:@(\d+|dim))?$")  # exact counts, or hashed to a size ("dim": the model's)
_SOURMASH_NAME = re.compile(r"^sourmash(?:-k(\d+))?$")
# The strongest classic methods, measured beside the model: exact k-mer counts at k = 5-8, the same profiles
# hashed to the model's own vector size (the comparison at equal bytes), sourmash FracMinHash at k = 11, 21.
STRONG_BASELINES = (
    "5-mer", "6-mer", "7-mer", "8-mer", "5-mer@dim", "6-mer@dim", "7-mer@dim", "sourmash-k11", "sourmash-k21",
)  # fmt: skip


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
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.embed = embed
        self.index, _ = index.build_faiss(self.vectors, "flat")

    def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(self.index, queries, k)

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_vectors(self.embed(queries), k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        idx, sims = self.search_vectors(self.vectors[positions], k + 1)
        return drop_self(idx, sims, positions, min(k, self.index.ntotal - 1))


def drop_self(idx: np.ndarray, sims: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own position (or, when ties pushed it out, the last column), keeping k columns."""
    drop = idx == positions[:, None]
    drop[~drop.any(1), -1] = True
    keep = ~drop
    rows = idx.shape[0]
    return idx[keep].reshape(rows, -1)[:, :k], sims[keep].reshape(rows, -1)[:, :k]


def digest(tokens: np.ndarray) -> bytes:
    """A sequence's identity by content (duplicates in a collection share it)."""
    return hashlib.blake2b(np.ascontiguousarray(tokens, dtype=np.uint8).tobytes(), digest_size=16).digest()


@dataclass
class EmbeddingMethod:
    """A method that maps sequences to L2-normalised vectors; embeddings are memoised by sequence content,
    so the collection is embedded once however many evaluations use it."""

    name: str
    embed_fn: Callable[[Sequence[np.ndarray]], np.ndarray]
    description: str = ""
    _cache: dict[bytes, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def embed(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        keys = [digest(s) for s in seqs]
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


class SparseCosineIndex:
    """Exact cosine search over sparse L2-normalised rows (exact k-mer counts at any k, in memory
    proportional to the distinct k-mers)."""

    def __init__(self, rows, embed: Callable[[Sequence[np.ndarray]], object]):
        self.rows, self.embed = rows.tocsr(), embed

    def _top(self, queries, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        idx_out, sim_out = [], []
        for start in range(0, queries.shape[0], 256):  # bounded dense block of similarities
            sims = (queries[start : start + 256] @ self.rows.T).toarray()
            if exclude is not None:
                sims[np.arange(sims.shape[0]), exclude[start : start + 256]] = -np.inf
            idx, val = top_k(sims, k)
            idx_out.append(idx)
            sim_out.append(val)
        return np.concatenate(idx_out).astype(np.int64), np.concatenate(sim_out).astype(np.float32)

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._top(self.embed(queries), k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        return self._top(self.rows[positions], min(k, self.rows.shape[0] - 1), exclude=positions)


@dataclass
class SparseKmerMethod:
    """Exact k-mer count profiles (sparse), cosine: the classic alignment-free method at full resolution."""

    k: int
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.k}-mer"

    @property
    def description(self) -> str:
        return f"exact {self.k}-mer counts (sparse, {4**self.k:,} possible k-mers), cosine"

    def embed(self, seqs: Sequence[np.ndarray]):
        return baselines.kmer_matrix(seqs, self.k, canonical=False)

    def index(self, refs: Sequence[np.ndarray]) -> SparseCosineIndex:
        return SparseCosineIndex(self.embed(refs), self.embed)

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.embed(a).multiply(self.embed(b)).sum(1)).ravel()


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
    """A method's index whose top `top` hits are re-ordered by alignment identity to the query
    (gene_ae.search.rerank); the similarities returned are those identities (hits past `top`, misses: -1)."""

    def __init__(self, base: SearchIndex, refs: Sequence[np.ndarray], top: int):
        self.base, self.refs, self.top = base, refs, top

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, _ = self.base.search(queries, max(k, self.top))
        return search.rerank_rows(queries, idx, self.refs.__getitem__, self.top, k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, _ = self.base.self_search(positions, max(k, self.top))
        queries = [self.refs[p] for p in positions]
        return search.rerank_rows(queries, idx, self.refs.__getitem__, self.top, k)


@dataclass
class RerankedMethod:
    """`base` for candidates, alignment for the order of its top hits: search as `gene-ae search --rerank`."""

    base: Method
    top: int = 10

    @property
    def name(self) -> str:
        return f"{self.base.name}+align"

    @property
    def description(self) -> str:
        return (
            f"{getattr(self.base, 'description', self.base.name)}; top {self.top} re-ordered by alignment "
            "identity (gene_ae.search.align.align_hit: global for similar lengths, infix or minimap2 otherwise)"
        )

    def index(self, refs: Sequence[np.ndarray]) -> RerankedIndex:
        return RerankedIndex(self.base.index(refs), refs, self.top)

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        return self.base.pair_similarity(a, b)


def build_methods(
    encoder: Encoder | None, cfg: EvalConfig, seqs: Sequence[np.ndarray]
) -> tuple[list[Method], dict[str, str]]:
    """The methods named in cfg.methods, and {name: why skipped} for those that cannot run here."""
    methods: list[Method] = []
    skipped: dict[str, str] = {}
    for name in cfg.methods:
        kmer = _KMER_NAME.match(name)
        if name == SEARCH:
            if encoder is None:
                skipped[name] = "no encoder given (the index it searches is built with it)"
                continue
            methods.append(SearchMethod(encoder, cfg.batch_size))
        elif name == "gene-ae":
            if encoder is None:
                skipped[name] = "no encoder given"
                continue
            embed = partial(encoder.embed_tokens, batch_size=cfg.batch_size)
            methods.append(EmbeddingMethod(name, embed, f"gene-ae encoder {encoder.uri or '(in memory)'}, cosine"))
        elif kmer:
            k, size = int(kmer.group(1)), kmer.group(2)
            if size is None:
                methods.append(SparseKmerMethod(k))
                continue
            if size == "dim" and encoder is None:
                skipped[name] = "no encoder given (its vector size sets the hashed profile's)"
                continue
            dim = encoder.dim if size == "dim" else int(size)
            label = f"{k}-mer@{dim}"
            embed = partial(baselines.hashed_profiles, k=k, dim=dim)
            methods.append(EmbeddingMethod(label, embed, f"canonical {k}-mer counts hashed (signed) to {dim} values"))
        elif sourmash := _SOURMASH_NAME.match(name):
            if not baselines.is_available():
                skipped[name] = "sourmash is not installed (pip install 'gene-ae[baselines]')"
                continue
            ksize = int(sourmash.group(1) or cfg.sourmash_ksize)
            scaled = cfg.sourmash_scaled or baselines.auto_scaled([s.size for s in seqs])
            methods.append(SourmashMethod(ksize, scaled, name))
        else:
            raise ValueError(
                f"unknown method {name!r} (known: gene-ae search, gene-ae, K-mer such as 7-mer, K-mer@SIZE or "
                "K-mer@dim, sourmash or sourmash-kK)"
            )
    if cfg.rerank > 0:  # the default search aligns already
        methods += [RerankedMethod(m, cfg.rerank) for m in methods if not isinstance(m, SearchMethod)]
    return methods, skipped
