"""k-mers of token arrays: codes and the one k-mer hash in numpy, count matrices through kmers.c.

The one implementation behind the exact k-mer index (gene_ae.index.kmer_index) and the k-mer baselines
(gene_ae.evaluate.baselines); the model's bags compute the same ids and the same hash in torch
(gene_ae.model.bags), checked equal by tests/test_kmers.py.

A k-mer's code is its bases in 2 bits each (A, C, G, T = 0..3), the first base most significant; its
reverse complement's code is built in the same pass, so canonical codes cost one extra shift per base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from gene_ae.core.native import I32, I64, P, at, load
from shard_tools.alphabet import FIRST_BASE

if TYPE_CHECKING:
    from scipy import sparse

MAX_K = 31  # 2k bits must fit a uint64
# The one k-mer hash: Fibonacci hashing, code x 2^64 / golden ratio (mod 2^64). Its high 32 bits pick a
# bucket, bit 31 a sign, bits 12..31 whether a FracMinHash-style sample keeps the k-mer: independent bits.
KMER_HASH = 0x9E3779B97F4A7C15
KMER_HASH_SIGNED = KMER_HASH - (1 << 64)  # the same multiplier as a wrapping int64 (torch has no uint64)
_PIECE = 1 << 22  # bases counted per pass: bounds temporary memory whatever the input length


@cache
def _lib():
    return load("gene_ae.core._kmers", "gene_ae/core/kmers.c",
                {"kmer_rows": ((P, P, I64, I32, I32, I64, I32, I64, I32, P, P, P), I64),
                 "kmer_id_row": ((P, I64, I32, I32, I64, I32, I32, P), None)})  # fmt: skip


def kmer_id_row(tokens: np.ndarray, k: int, canonical: bool, buckets: int) -> np.ndarray:
    """The model's k-mer ids of one row (gene_ae.model.bags.kmer_ids of tokens[None], its [0]) in kmers.c: int64,
    max(len - k + 1, 1) of them, the pad id `buckets` where a k-mer holds a non-base (or the row is shorter than
    k); vocabularies larger than `buckets` hashed into it as hash_bucket does."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    tokens = np.ascontiguousarray(tokens, dtype=np.uint8)
    if tokens.size < k:
        return np.full(1, buckets, np.int64)
    ids = np.empty(tokens.size - k + 1, np.int64)
    _lib().kmer_id_row(at(tokens), tokens.size, k, int(canonical), buckets, int(buckets < 4**k), FIRST_BASE, at(ids))
    return ids


def kmer_codes(tokens: np.ndarray, k: int, canonical: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(codes, valid) at each of the len - k + 1 start positions: uint64 codes (the smaller of a k-mer and
    its reverse complement when canonical), and whether the k-mer is real (no N or special token in it)."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    codes = tokens.astype(np.int64) - FIRST_BASE
    m = codes.size - k + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    bad = (codes < 0) | (codes > 3)
    codes[bad] = 0
    fwd = np.zeros(m, dtype=np.uint64)
    rev = np.zeros(m, dtype=np.uint64) if canonical else None
    for j in range(k):
        part = codes[j : j + m].astype(np.uint64)
        fwd = (fwd << np.uint64(2)) | part
        if rev is not None:
            rev |= (np.uint64(3) - part) << np.uint64(2 * j)
    bad_before = np.concatenate([[0], np.cumsum(bad)])
    valid = bad_before[k : k + m] == bad_before[:m]
    return (np.minimum(fwd, rev) if rev is not None else fwd), valid


def reverse_complement_codes(codes: np.ndarray, k: int) -> np.ndarray:
    """Code of each k-mer's reverse complement (A<->T is 0<->3, C<->G is 1<->2)."""
    x, rc = codes.astype(np.int64), np.zeros(codes.shape, np.int64)
    for _ in range(k):
        rc = rc * 4 + (3 - x % 4)
        x //= 4
    return rc


def kmer_hash(codes: np.ndarray) -> np.ndarray:
    """The one k-mer hash (uint64): code x KMER_HASH, wrapping."""
    with np.errstate(over="ignore"):
        return codes.astype(np.uint64) * np.uint64(KMER_HASH)


def hash_bucket(codes: np.ndarray, buckets: int) -> np.ndarray:
    """Bucket in [0, buckets) of each code: the hash's high 32 bits, modulo buckets."""
    return ((kmer_hash(codes) >> np.uint64(32)) % np.uint64(buckets)).astype(np.int64)


def hash_sign(codes: np.ndarray) -> np.ndarray:
    """+1 or -1 per code (bit 31 of the hash), for signed feature hashing."""
    return np.where((kmer_hash(codes) >> np.uint64(31)) & np.uint64(1), 1.0, -1.0)


def hash_kept(codes: np.ndarray, scaled: int) -> np.ndarray:
    """Whether each code is in the 1/scaled sample (bits 12..31 of the hash)."""
    return ((kmer_hash(codes) >> np.uint64(12)) & np.uint64(0xFFFFF)) % np.uint64(scaled) == 0


def n_columns(k: int, buckets: int | None) -> int:
    """Columns of a count matrix: every k-mer when 4**k fits in `buckets` (or buckets is None), else buckets."""
    return 4**k if buckets is None or 4**k <= buckets else buckets


@dataclass
class CountRows:
    """Sparse rows of k-mer counts in CSR's three arrays, made without scipy (whose import costs a one-query
    search a fifth of its time): row r's columns are indices[indptr[r]:indptr[r + 1]], increasing."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]
    norms: np.ndarray | None = None  # each row's L2 norm before l2() scaled it (None: not scaled)

    def l2(self) -> CountRows:
        """Each row scaled to unit L2 norm (all-zero rows stay zero), its norm before kept in `norms`."""
        sums = np.add.reduceat(self.data.astype(np.float64) ** 2, self.indptr[:-1]) if self.data.size else None
        lens = np.diff(self.indptr)
        norms = np.zeros(lens.size)
        if sums is not None:
            norms[lens > 0] = np.sqrt(sums[lens > 0])
        scale = 1 / np.maximum(norms, 1e-12).astype(np.float32)
        data = (self.data * np.repeat(scale, lens)).astype(np.float32)
        return CountRows(self.indptr, self.indices, data, self.shape, norms.astype(np.float32))

    def thinned(self, rows: np.ndarray, share: int) -> CountRows:
        """The rows flagged in `rows` (a boolean per row) keeping about 1/share of their k-mers, the same ones
        for every row (hash_kept of the column), their norms dropped (0: scored by plain cosine); the other rows
        whole."""
        row_of = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        keep = ~rows[row_of] | hash_kept(self.indices.astype(np.uint64), share)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=self.shape[0]))])
        norms = None if self.norms is None else np.where(rows, 0, self.norms).astype(np.float32)
        return CountRows(indptr.astype(np.int64), self.indices[keep], self.data[keep], self.shape, norms)

    def csr(self) -> sparse.csr_matrix:
        from scipy import sparse

        return sparse.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


def kmer_count_rows(
    seqs: Sequence[np.ndarray], k: int, canonical: bool = True, buckets: int | None = None, scaled: int = 1
) -> CountRows:
    """kmer_counts' counts as CountRows (numpy and kmers.c, no scipy), rows counted about _PIECE bases at a time
    (a longer row alone, kmers.c sorting it a piece at a time): memory is the result and one such pass."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    dim = n_columns(k, buckets)
    if dim > 1 << 31:
        raise ValueError(f"{dim} k-mer columns do not fit 32-bit indices: give buckets (at most 2^31) for k = {k}")
    lens = np.array([np.asarray(s).size for s in seqs], np.int64)
    indptr, indices, data = [np.zeros(1, np.int64)], [], []
    for a, b in _row_chunks(lens):
        rows = [np.asarray(s, dtype=np.uint8).ravel() for s in seqs[a:b]]
        flat = np.ascontiguousarray(rows[0]) if len(rows) == 1 else np.concatenate(rows)  # a long row not copied
        bounds = np.concatenate([[0], np.cumsum(lens[a:b])]).astype(np.int64)
        room = int(np.minimum(np.maximum(lens[a:b] - k + 1, 0), dim).sum())
        ptr, cols, n = np.empty(b - a + 1, np.int64), np.empty(room, np.int32), np.empty(room, np.float32)
        got = _lib().kmer_rows(at(flat), at(bounds), b - a, k, int(canonical), dim, int(dim != 4**k), scaled,
                               FIRST_BASE, at(ptr), at(cols), at(n))  # fmt: skip
        if got < 0:
            raise MemoryError("kmers.c: out of memory counting k-mers")
        indptr.append(ptr[1:] + indptr[-1][-1])
        indices.append(cols[:got])
        data.append(n[:got])
    return CountRows(np.concatenate(indptr), _joined(indices, np.int32), _joined(data, np.float32), (len(lens), dim))


def _row_chunks(lens: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) runs of rows of about _PIECE bases together (a longer row alone); none for no rows."""
    out, a, size = [], 0, 0
    for r, n in enumerate(lens.tolist()):
        if size and size + n > _PIECE:
            out.append((a, r))
            a, size = r, 0
        size += n
    if a < lens.size:
        out.append((a, int(lens.size)))
    return out


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def kmer_counts(
    seqs: Sequence[np.ndarray], k: int, canonical: bool = True, buckets: int | None = None, scaled: int = 1
) -> sparse.csr_matrix:
    """[len(seqs), n_columns] float32 counts of each sequence's k-mers (k-mers touching N are skipped).

    Canonical by default (a k-mer and its reverse complement count as one). Vocabularies larger than
    `buckets` are hashed into it (`hash_bucket`); `scaled` > 1 keeps about 1/scaled of the distinct k-mers.
    Memory is the result plus one pass of about _PIECE bases (kmer_count_rows)."""
    return kmer_count_rows(seqs, k, canonical, buckets, scaled).csr()


def l2_rows(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero): cosine is then a row dot product."""
    from scipy import sparse

    return (sparse.diags(l2_scales(m)) @ m).tocsr().astype(np.float32)


def l2_scales(m: sparse.csr_matrix) -> np.ndarray:
    """float32 1 / L2 norm of each row (huge for an all-zero row): l2_rows multiplies each value by its row's,
    so a stored count times its scale gives back exactly the normalised value (gene_ae.index.kmer_index)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return 1 / np.maximum(norms, 1e-12).astype(np.float32)
