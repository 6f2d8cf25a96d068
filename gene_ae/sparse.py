"""The exact sparse half of hybrid search: TF-IDF weighted canonical k-mer counts in an inverted index.

Why: on dense collections (16S, outbreak genomes) retrieval is a precision problem, and exact k-mers find
a 20-30 %-diverged copy's source far more often than a small learned vector does (RESULTS.md); text search
pairs BM25 with dense retrievers for the same reason. Rows are *segments*: whole records up to
`segment` bases, overlapping pieces of longer ones (so a query can hit the part of a genome it matches,
and a long subject does not dilute its own score). k follows the collection's lengths (`choose_k`): short k
for genes, where mutated copies keep few long k-mers, longer k for loci and genomes, where short k-mers
recur by chance. Canonical k-mers make it strand-free. Numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from gene_ae.kmers import kmer_codes

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads k-mer codes over buckets
_CHUNK_BASES = 1 << 22  # bases counted per pass: bounds temporary memory


@dataclass
class SparseConfig:
    k: int = 0  # k-mer size; 0 = from the collection's median record length (choose_k)
    bucket_bits: int = 22  # k-mers with 4**k > 2**bucket_bits columns are hashed into 2**bucket_bits buckets
    scaled: int = 1  # keep about 1/scaled of the distinct k-mers (by hash, FracMinHash-style); 1 = all
    segment: int = 8192  # records longer than this are indexed as overlapping segments of this many bases
    tfidf: bool = False  # weight (1 + log tf) * idf; False = raw counts (measured better: choose_k)


def choose_k(median_length: float) -> int:
    """k for a collection: 10 up to 20 kb records (genes, 16S), 14 beyond (loci, genomes).

    Chosen on the chimp genes (1,682, a set no report uses), 200 copies per divergence, raw counts:
    recall@10 at 30 % was 0.78 / 0.96 / 0.985 / 0.965 for k = 8 / 9 / 10 / 11, and TF-IDF weighting lost
    to raw counts at every k on 16S (0.83 vs 0.955 at k = 8). Longer records need longer k: in a 8 kb
    segment most 10-mers of the 4**10 recur by chance; 14-mers (hashed to 2**22 buckets) do not."""
    return 10 if median_length <= 20_000 else 14


def segment_starts(n: int, segment: int) -> np.ndarray:
    """Starts of segments `segment` long, half overlapping, the last ending at n; [0] for short records."""
    if n <= segment:
        return np.array([0], dtype=np.int64)
    stride = segment // 2
    starts = np.arange(0, n - segment + 1, stride, dtype=np.int64)
    return starts if starts[-1] == n - segment else np.append(starts, n - segment)


def kmer_columns(tokens: np.ndarray, k: int, bucket_bits: int, scaled: int = 1) -> np.ndarray:
    """Column of each canonical k-mer of one sequence (k-mers touching N are skipped), in order."""
    codes, valid = kmer_codes(tokens, k)
    canon = codes[valid]
    mixed = canon * _MIX
    if scaled > 1:
        keep = (mixed >> np.uint64(20)) % np.uint64(scaled) == 0
        canon, mixed = canon[keep], mixed[keep]
    if 2 * k <= bucket_bits:
        return canon.astype(np.int64)
    return (mixed >> np.uint64(64 - bucket_bits)).astype(np.int64)


def n_columns(k: int, bucket_bits: int) -> int:
    return 4**k if 2 * k <= bucket_bits else 2**bucket_bits


def count_matrix(seqs: Sequence[np.ndarray], cfg: SparseConfig) -> sparse.csr_matrix:
    """[len(seqs), n_columns] k-mer counts (float32), one row per sequence (queries: small batches)."""
    dim = n_columns(cfg.k, cfg.bucket_bits)
    cols = [kmer_columns(s, cfg.k, cfg.bucket_bits, cfg.scaled) for s in seqs]
    rows = [np.full(c.size, n, dtype=np.int64) for n, c in enumerate(cols)]
    return _stack([_block(rows, cols, dim)], len(seqs), dim)


def _block(rows: list[np.ndarray], cols: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, counts) of the distinct (row, k-mer column) pairs."""
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    key, counts = np.unique(r * dim + c, return_counts=True)
    return key // dim, key % dim, counts.astype(np.float32)


def _stack(blocks, n: int, dim: int) -> sparse.csr_matrix:
    r = np.concatenate([b[0] for b in blocks])
    c = np.concatenate([b[1] for b in blocks])
    v = np.concatenate([b[2] for b in blocks])
    return sparse.csr_matrix((v, (r, c)), shape=(n, dim), dtype=np.float32)


class SparseBuilder:
    """Adds records one at a time (memory: the index being built plus one chunk), as `gene-ae embed` streams.

    `sample_lengths`: lengths of the first records, to pick k when cfg.k is 0."""

    def __init__(self, cfg: SparseConfig, sample_lengths: Sequence[int] = ()):
        self.cfg = SparseConfig(**asdict(cfg))
        if self.cfg.k == 0:
            self.cfg.k = choose_k(float(np.median(sample_lengths)) if len(sample_lengths) else 0.0)
        self.dim = n_columns(self.cfg.k, self.cfg.bucket_bits)
        self.owner: list[int] = []
        self.start: list[int] = []
        self.end: list[int] = []
        self._blocks: list = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._size = 0

    def add(self, record: int, tokens: np.ndarray) -> None:
        for a in segment_starts(int(tokens.size), self.cfg.segment):
            b = min(int(a) + self.cfg.segment, int(tokens.size))
            c = kmer_columns(tokens[a:b], self.cfg.k, self.cfg.bucket_bits, self.cfg.scaled)
            self._rows.append(np.full(c.size, len(self.owner), dtype=np.int64))
            self._cols.append(c)
            self.owner.append(record), self.start.append(int(a)), self.end.append(b)
            self._size += c.size
        if self._size >= _CHUNK_BASES:
            self._blocks.append(_block(self._rows, self._cols, self.dim))
            self._rows, self._cols, self._size = [], [], 0

    def finish(self) -> SparseIndex:
        self._blocks.append(_block(self._rows, self._cols, self.dim))
        counts = _stack(self._blocks, len(self.owner), self.dim)
        self._blocks = []
        idf = np.zeros(0, np.float32)
        if self.cfg.tfidf:
            df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)
            idf = (np.log((counts.shape[0] + 1) / (df + 1)) + 1).astype(np.float32)
        matrix = _weigh(counts, idf if self.cfg.tfidf else None)
        return SparseIndex(self.cfg, matrix.T.tocsr(), idf, self.owner, self.start, self.end)


class SparseIndex:
    """Segments' weighted k-mer vectors, searched by cosine through the inverted index (features x segments).

    `owner[i]`, `start[i]`, `end[i]`: the record a segment belongs to and its span in that record."""

    FILE = "sparse.npz"

    def __init__(self, cfg: SparseConfig, inverted: sparse.csr_matrix, idf: np.ndarray, owner, start, end):
        self.cfg, self.inverted, self.idf = cfg, inverted, idf
        self.owner, self.start, self.end = (np.asarray(a, dtype=np.int64) for a in (owner, start, end))

    @classmethod
    def build(cls, seqs: Sequence[np.ndarray], cfg: SparseConfig | None = None) -> SparseIndex:
        """Index every record of `seqs` (long ones as segments); cfg.k = 0 picks k from the median length."""
        builder = SparseBuilder(cfg or SparseConfig(), [s.size for s in seqs])
        for r, s in enumerate(seqs):
            builder.add(r, s)
        return builder.finish()

    @property
    def n_segments(self) -> int:
        return int(self.owner.size)

    @property
    def nbytes(self) -> int:
        m = self.inverted
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes + 3 * self.owner.nbytes + self.idf.nbytes)

    def query_matrix(self, queries: Sequence[np.ndarray]) -> sparse.csr_matrix:
        return _weigh(count_matrix(queries, self.cfg), self.idf if self.cfg.tfidf else None)

    def search_segments(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(segment indices [q, k], cosine [q, k]) best first; -1 where fewer than k segments share a k-mer."""
        scores = (self.query_matrix(queries) @ self.inverted).tocsr()
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        sims = np.zeros((len(queries), k), dtype=np.float32)
        for row in range(scores.shape[0]):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            cols, vals = scores.indices[lo:hi], scores.data[lo:hi]
            top = np.argsort(-vals, kind="stable")[:k] if vals.size <= 4 * k else _top(vals, k)
            idx[row, : top.size], sims[row, : top.size] = cols[top], vals[top]
        return idx, sims

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / self.FILE
        m = self.inverted
        c = self.cfg
        arrays = {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": np.array(m.shape)}
        arrays |= {"idf": self.idf, "owner": self.owner, "start": self.start, "end": self.end}
        np.savez(path, cfg=np.array([c.k, c.bucket_bits, c.scaled, c.segment, c.tfidf]), **arrays)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SparseIndex:
        path = Path(directory) / cls.FILE
        try:
            z = np.load(path)
            k, bits, scaled, segment, tfidf = (int(x) for x in z["cfg"])
            m = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(int(x) for x in z["shape"]))
            return cls(
                SparseConfig(k, bits, scaled, segment, bool(tfidf)), m, z["idf"], z["owner"], z["start"], z["end"]
            )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable k-mer index ({exc})") from None


def _top(vals: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-vals, k - 1)[:k]
    return part[np.argsort(-vals[part], kind="stable")]


def _weigh(counts: sparse.csr_matrix, idf: np.ndarray | None) -> sparse.csr_matrix:
    """(1 + log tf) * idf (or raw counts without idf), rows L2-normalised."""
    m = counts.copy()
    if idf is not None:
        m.data = (1 + np.log(m.data)) * idf[m.indices]
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    m = sparse.diags(1 / np.maximum(norms, 1e-12).astype(np.float32)) @ m
    return m.tocsr().astype(np.float32)
