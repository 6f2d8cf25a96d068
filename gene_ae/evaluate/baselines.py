"""Classic alignment-free baselines that `gene-ae eval` runs beside the encoder: k-mer profiles and sourmash.

Both take token arrays (shard_tools.alphabet), like `Encoder.embed_tokens`, so evaluation treats every method
alike. Numpy and scipy only (no torch); sourmash is optional and imported lazily.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from gene_ae.core.kmers import (
    hash_bucket,
    hash_sign,
    kmer_codes,
    kmer_counts,
    kmer_hash,
    l2_rows,
    reverse_complement_codes,
)
from gene_ae.core.topk import top_k
from shard_tools.alphabet import decode


def kmer_profiles(
    seqs: Sequence[np.ndarray], k: int = 5, both_strands: bool = False, canonical: bool = False
) -> np.ndarray:
    """[n, 4**k] float32 L2-normalised k-mer counts, dense (kmer_matrix is the sparse form); k-mers touching
    N or specials are skipped, sequences shorter than k get zero rows.

    both_strands adds the reverse complement's counts (a strand-symmetric vector); canonical counts each
    k-mer under the smaller of itself and its reverse complement."""
    if not 1 <= k <= 12:
        raise ValueError(f"k must be in 1..12, got {k}")
    if both_strands and canonical:
        raise ValueError("choose both_strands or canonical, not both (each already makes profiles strand-free)")
    counts = kmer_counts(seqs, k, canonical).toarray().astype(np.float64)
    if both_strands:
        counts += counts[:, rc_index(k)]
    norms = np.linalg.norm(counts, axis=1, keepdims=True)
    return (counts / np.maximum(norms, 1e-12)).astype(np.float32)


def kmer_matrix(seqs: Sequence[np.ndarray], k: int, canonical: bool = True) -> sparse.csr_matrix:
    """[n, 4**k] sparse L2-normalised k-mer counts (canonical by default): the exact profile at any k up to
    15, in memory proportional to the distinct k-mers, not to 4**k. Cosine = row dot products."""
    if not 1 <= k <= 15:
        raise ValueError(f"k must be in 1..15, got {k}")
    return l2_rows(kmer_counts(seqs, k, canonical))


def hashed_profiles(seqs: Sequence[np.ndarray], k: int, dim: int, canonical: bool = True) -> np.ndarray:
    """[n, dim] k-mer counts folded by signed feature hashing (Weinberger et al. 2009) and L2-normalised:
    the classic method at a learned vector's own size. Each k-mer adds +1 or -1 to one of dim buckets
    (gene_ae.core.kmers' one hash)."""
    m = kmer_counts(seqs, k, canonical).tocoo()
    out = np.zeros((m.shape[0], dim), dtype=np.float64)
    np.add.at(out, (m.row, hash_bucket(m.col, dim)), hash_sign(m.col) * m.data)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


EMPTY_BIN = np.uint32(0xFFFFFFFF)


def minhash_codes(seqs: Sequence[np.ndarray], k: int, bins: int = 16) -> np.ndarray:
    """[n, bins] uint32 one-permutation MinHash sketches (Li, Owen, Zhang 2012): each canonical k-mer's hash
    picks a bin by its high bits and competes there by its low 32; a bin no k-mer reached is EMPTY_BIN. 16 bins
    of 32 bits are 64 bytes, the learned code's size. Bins of one sequence and another agree with chance about
    their Jaccard similarity."""
    out = np.full((len(seqs), bins), EMPTY_BIN, dtype=np.uint32)
    for row, s in enumerate(seqs):
        codes, valid = kmer_codes(np.asarray(s, dtype=np.uint8), k)
        h = kmer_hash(codes[valid])  # the one k-mer hash
        if not h.size:
            continue
        which = ((h >> np.uint64(32)) % np.uint64(bins)).astype(np.int64)
        np.minimum.at(out[row], which, (h & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    return out


def minhash_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of bins two sketches agree on (bins empty in both left out), along the last axis, broadcasting:
    pairs (a[i], b[i]), or every row of a against every row of b as a[:, None] and b[None]."""
    same = (a == b) & (a != EMPTY_BIN)
    filled = (a != EMPTY_BIN) | (b != EMPTY_BIN)
    return same.sum(-1) / np.maximum(filled.sum(-1), 1)


def rc_index(k: int) -> np.ndarray:
    """rc[i] = code of the reverse complement of k-mer i, for all 4**k codes."""
    return reverse_complement_codes(np.arange(4**k, dtype=np.int64), k)


def is_available() -> bool:
    """Whether sourmash can be imported (it is an optional dependency: pip install gene-ae[baselines])."""
    return importlib.util.find_spec("sourmash") is not None


def auto_scaled(lengths: Sequence[int]) -> int:
    """FracMinHash scaled for a collection: 1 (every k-mer, the exact Jaccard) for genes up to 20 kb median,
    else the largest power of ten (up to 1000) leaving the median sequence 1,000 or more hashes."""
    median = float(np.median(lengths)) if len(lengths) else 0.0
    if median <= 20_000:
        return 1
    scaled = 1
    while scaled < 1000 and median / (scaled * 10) >= 1000:
        scaled *= 10
    return scaled


def sketch(seqs: Sequence[np.ndarray], ksize: int = 21, scaled: int = 10) -> list[np.ndarray]:
    """FracMinHash sketches via sourmash, as sorted uint64 hash arrays (canonical DNA k-mers, N skipped)."""
    if not is_available():
        raise RuntimeError("sourmash is not installed: pip install 'gene-ae[baselines]'")
    import sourmash

    out = []
    for s in seqs:
        mh = sourmash.MinHash(n=0, ksize=ksize, scaled=scaled)
        if s.size >= ksize:
            mh.add_sequence(decode(s), force=True)  # force: skip k-mers with N instead of raising
        out.append(np.sort(np.fromiter(mh.hashes.keys(), dtype=np.uint64, count=len(mh))))
    return out


def jaccard_pairs(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """Row-wise Jaccard of two lists of sketches (what sourmash's MinHash.jaccard gives at equal scaled)."""
    out = np.zeros(len(a), dtype=np.float32)
    for i, (x, y) in enumerate(zip(a, b)):
        inter = np.intersect1d(x, y, assume_unique=True).size
        union = x.size + y.size - inter
        out[i] = inter / union if union else 0.0
    return out


class SourmashIndex:
    """Brute-force FracMinHash search by Jaccard similarity (sourmash search's default measure).

    Intersections are one sparse matrix product over hash-presence matrices, so it is exact and equal to
    sourmash's own MinHash.jaccard. Results with no shared hash are reported as index -1 (no hit), because
    an all-zero row has no meaningful order. scaled=None picks one from the collection (`auto_scaled`).
    """

    def __init__(self, seqs: Sequence[np.ndarray], ksize: int = 21, scaled: int | None = None):
        self.ksize = ksize
        self.scaled = scaled or auto_scaled([s.size for s in seqs])
        self.sketches = sketch(seqs, ksize, self.scaled)
        flat = np.concatenate(self.sketches) if self.sketches else np.zeros(0, np.uint64)
        self.vocab = np.unique(flat)
        self.matrix = self._presence(self.sketches)
        self.sizes = np.array([s.size for s in self.sketches], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.sketches)

    def _presence(self, sketches: Sequence[np.ndarray]) -> sparse.csr_matrix:
        """Rows: sketches; columns: this collection's hashes (hashes it lacks cannot intersect and are dropped)."""
        cols, indptr = [], [0]
        for h in sketches:
            pos = np.searchsorted(self.vocab, h)
            pos = pos[(pos < self.vocab.size) & (self.vocab[np.minimum(pos, self.vocab.size - 1)] == h)]
            cols.append(pos)
            indptr.append(indptr[-1] + pos.size)
        indices = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        data = np.ones(indices.size, dtype=np.float64)
        return sparse.csr_matrix((data, indices, np.array(indptr)), shape=(len(sketches), self.vocab.size))

    def similarities(self, sketches: Sequence[np.ndarray]) -> np.ndarray:
        """Dense [q, n] Jaccard of query sketches against the collection."""
        inter = (self._presence(sketches) @ self.matrix.T).toarray()
        q_sizes = np.array([s.size for s in sketches], dtype=np.float64)
        union = q_sizes[:, None] + self.sizes[None, :] - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).astype(np.float32)

    def search(self, query_seqs: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices [q, k], Jaccard [q, k]) best first; k is capped at the collection size; -1 = no hit."""
        return self.search_sketches(sketch(query_seqs, self.ksize, self.scaled), k)

    def search_sketches(
        self, sketches: Sequence[np.ndarray], k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search precomputed sketches, in blocks to bound memory; `exclude[i]` is a collection index
        row i may not return (leave-one-out)."""
        idx_out, sim_out = [], []
        for start in range(0, len(sketches), 1024):
            sims = self.similarities(sketches[start : start + 1024])
            if exclude is not None:
                rows = np.arange(sims.shape[0])
                sims[rows, exclude[start : start + 1024]] = -1.0
            idx, val = top_k(sims, k)
            idx = np.where(val > 0, idx, -1)
            idx_out.append(idx)
            sim_out.append(np.maximum(val, 0.0))
        if not idx_out:
            width = min(k, len(self))
            return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
        return np.concatenate(idx_out), np.concatenate(sim_out)

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbours of collection members (by position), never returning the member itself."""
        positions = np.asarray(positions, dtype=np.int64)
        k = min(k, len(self) - 1)
        return self.search_sketches([self.sketches[i] for i in positions], k, exclude=positions)
