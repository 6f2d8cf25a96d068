"""The methods evaluation compares, behind one interface: an index over a collection and a pair similarity.

Every search here returns (indices, similarities), best first, the order gene_ae.index.search uses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gene_ae.core.topk import top_k
from gene_ae.evaluate import baselines
from gene_ae.evaluate.config import EvalConfig
from gene_ae.evaluate.search_method import NAME as SEARCH
from gene_ae.evaluate.search_method import SearchMethod
from gene_ae.index import vectors as index
from gene_ae.search import rerank

if TYPE_CHECKING:
    from gene_ae.model.encoder import Encoder

_KMER_NAME = re.compile(r"^(\d+)-mer(?:@(\d+|dim))?$")  # exact counts, or hashed to a size ("dim": the model's)
# At a size in bytes a record (issue 33's equal-bytes comparison): the model's vector as stored in N bytes
# (gene-ae@64b), a hashed profile of N values at 8 bits (7-mer@64b), a MinHash of N / 4 32-bit bins (minhash-k11@64b)
_BYTES_NAME = re.compile(r"^(gene-ae|(\d+)-mer|minhash-k(\d+))@(\d+)b$")
# As N sign bits (N / 8 bytes, index.build_signs): the model's N-value vector (gene-ae@512bit), a profile hashed to
# N values (7-mer@512bit)
_BITS_NAME = re.compile(r"^(gene-ae|(\d+)-mer)@(\d+)bit$")
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
    """Exact cosine search over L2-normalised vectors (faiss IndexFlatIP, the index gene-ae search uses), or over
    their codes of at most `code_bytes` bytes each as the index stores them (vectors.build_coded; queries stay
    float, as faiss compares them)."""

    def __init__(
        self,
        vectors: np.ndarray,
        embed: Callable[[Sequence[np.ndarray]], np.ndarray],
        code_bytes: int = 0,
        signs: bool = False,
    ):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.embed = embed
        build = partial(index.build_coded, size=code_bytes) if code_bytes else index.build_faiss
        build = index.build_signs if signs else build
        self.index = build(self.vectors, "flat")[0]

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
    so the collection is embedded once however many evaluations use it.

    code_bytes > 0: each record stored in at most that many bytes, as `gene-ae embed --vector-codec pq64` stores
    it (vectors.build_coded): product-quantised from PQ_CODES records on (a ValueError below), never the 8-bit
    values the index keeps under PQ_MIN records, which would spend a byte a value (512 for a 512-value vector)."""

    name: str
    embed_fn: Callable[[Sequence[np.ndarray]], np.ndarray]
    description: str = ""
    code_bytes: int = 0
    signs: bool = False  # stored as its sign bits (vectors.build_signs), code_bytes = values / 8
    coder: Any = field(default=None, init=False, repr=False)  # code_bytes > 0: the faiss index built last
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
        found = VectorIndex(self.embed(refs), self.embed, self.code_bytes, self.signs)
        if self.code_bytes:
            self.coder = found.index
        return found

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        """Cosine of each pair. Coded (code_bytes > 0) as a search compares them: a as stored, decoded from its
        code by the coder of the collection indexed last; b as a query, float. Before any index that coder does
        not exist, and one trained on the pairs would not be the collection's (b holds mutated copies): an error."""
        stored = self.embed(a)
        if self.code_bytes:
            if self.coder is None:
                raise ValueError(f"{self.name}: index the collection first (its codes are trained on it)")
            stored = index.requantised(self.coder, stored)
        return np.einsum("ij,ij->i", stored, self.embed(b))


@dataclass
class MinHashMethod:
    """One-permutation MinHash of canonical k-mers, `bins` 32-bit minima (baselines.minhash_codes): the classic
    sketch at the learned code's bytes; similarity the share of bins that agree."""

    k: int
    bins: int = 16
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"minhash-k{self.k}@{4 * self.bins}b"

    @property
    def description(self) -> str:
        return f"one-permutation MinHash, {self.bins} bins of 32 bits ({4 * self.bins} bytes), canonical {self.k}-mers"

    def index(self, refs: Sequence[np.ndarray]) -> MinHashIndex:
        return MinHashIndex(baselines.minhash_codes(refs, self.k, self.bins), partial(baselines.minhash_codes,
                            k=self.k, bins=self.bins))  # fmt: skip

    def pair_similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        sa, sb = baselines.minhash_codes(a, self.k, self.bins), baselines.minhash_codes(b, self.k, self.bins)
        return baselines.minhash_similarity(sa, sb)


class BlockedIndex:
    """Brute-force search a block of queries at a time (a bounded dense block of similarities): a subclass gives
    `similarity(block) -> [b, size]`, `embed(seqs)` (queries as stored) and `stored(positions)`."""

    block = 256
    size = 0

    def _top(self, queries, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        idx_out, sim_out = [], []
        for start in range(0, queries.shape[0], self.block):
            sims = self.similarity(queries[start : start + self.block])
            if exclude is not None:
                sims[np.arange(sims.shape[0]), exclude[start : start + self.block]] = -np.inf
            idx, val = top_k(sims, k)
            idx_out.append(idx)
            sim_out.append(val)
        return np.concatenate(idx_out).astype(np.int64), np.concatenate(sim_out).astype(np.float32)

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._top(self.embed(queries), k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        return self._top(self.stored(positions), min(k, self.size - 1), exclude=positions)


class MinHashIndex(BlockedIndex):
    """Sketches searched by the share of agreeing bins."""

    block = 64  # a block compares [64, size, bins] bins at once

    def __init__(self, codes: np.ndarray, sketch: Callable[[Sequence[np.ndarray]], np.ndarray]):
        self.codes, self.embed, self.size = codes, sketch, len(codes)

    def similarity(self, queries: np.ndarray) -> np.ndarray:
        return baselines.minhash_similarity(queries[:, None], self.codes[None])

    def stored(self, positions: np.ndarray) -> np.ndarray:
        return self.codes[positions]


class SparseCosineIndex(BlockedIndex):
    """Exact cosine search over sparse L2-normalised rows (exact k-mer counts at any k, in memory
    proportional to the distinct k-mers)."""

    def __init__(self, rows, embed: Callable[[Sequence[np.ndarray]], object]):
        self.rows, self.embed = rows.tocsr(), embed
        self.size = self.rows.shape[0]

    def similarity(self, queries) -> np.ndarray:
        return (queries @ self.rows.T).toarray()

    def stored(self, positions: np.ndarray):
        return self.rows[positions]


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
        return rerank.rerank_rows(queries, idx, self.refs.__getitem__, self.top, k)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, _ = self.base.self_search(positions, max(k, self.top))
        queries = [self.refs[p] for p in positions]
        return rerank.rerank_rows(queries, idx, self.refs.__getitem__, self.top, k)


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
        kmer, coded, bits = _KMER_NAME.match(name), _BYTES_NAME.match(name), _BITS_NAME.match(name)
        if bits:
            what, size = bits.group(1), int(bits.group(3))
            if size % 8 or not size:
                raise ValueError(f"{name}: a sign code packs 8 values a byte; give a multiple of 8 bits")
            if what == "gene-ae" and encoder is None:
                skipped[name] = "no encoder given"
                continue
            if what == "gene-ae" and encoder.dim != size:
                raise ValueError(f"{name}: the model's vector has {encoder.dim} values, not {size}")
            if what == "gene-ae":
                embed, how = partial(encoder.embed_tokens, batch_size=cfg.batch_size), "gene-ae encoder's"
            else:
                embed = partial(baselines.hashed_profiles, k=int(bits.group(2)), dim=size)
                how = f"canonical {bits.group(2)}-mer counts hashed to"
            methods.append(EmbeddingMethod(name, embed, f"{how} {size} values as their signs, {size // 8} bytes",
                                           size // 8, signs=True))  # fmt: skip
            continue
        if coded:
            what, size = coded.group(1), int(coded.group(4))
            if what == "gene-ae" and encoder is None:
                skipped[name] = "no encoder given"
            elif what == "gene-ae":
                embed = partial(encoder.embed_tokens, batch_size=cfg.batch_size)
                how = "8 bits a value" if encoder.dim <= size else f"product-quantised to {size} bytes (the pq64 codec)"
                methods.append(EmbeddingMethod(name, embed, f"gene-ae encoder's {encoder.dim} values, {how}", size))
            elif coded.group(2):
                k = int(coded.group(2))
                embed = partial(baselines.hashed_profiles, k=k, dim=size)
                methods.append(EmbeddingMethod(name, embed, f"canonical {k}-mer counts hashed to {size} values, 8 bits "
                                               "each", size))  # fmt: skip
            else:
                if size % 4:
                    raise ValueError(f"{name}: a MinHash is 4-byte bins; give a multiple of 4 bytes")
                methods.append(MinHashMethod(int(coded.group(3)), size // 4, name))
            continue
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
                "K-mer@dim, sourmash or sourmash-kK; at N bytes a record: gene-ae@Nb, K-mer@Nb, minhash-kK@Nb)"
            )
    if cfg.rerank > 0:  # the default search aligns already
        methods += [RerankedMethod(m, cfg.rerank) for m in methods if not isinstance(m, SearchMethod)]
    return methods, skipped
