"""The order an index stores its segments in: relatives side by side, so a k-mer's postings are runs and short gaps.

Why: the postings are most of an index (SILVA's 204,065 genes, in MinHash order: 156.6 MB of 227.6 MiB) and
their size is the gaps between the segments holding a k-mer. Sorted by two MinHash values (`minhash_order`, the
first guess) relatives share minima and sit together; recursive graph bisection (order.c, Dhulipala et al. 2016)
then moves each segment to the half where its k-mers' postings cost fewer bits, half by half (96.6 MB). Both only
choose where segments are stored: every score, tie and hit is the same in any order (postings.py sums in stored
positions, mapped back).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from gene_ae.core.kmers import KMER_HASH
from gene_ae.core.native import I32, I64, P, at, load

if TYPE_CHECKING:
    from scipy import sparse


@dataclass(frozen=True)
class OrderConfig:
    rounds: int = 8  # swap rounds a split (each a few passes over its sampled postings; most settle sooner)
    leaf: int = 32  # no split of fewer segments than this (they stay as the splits above left them)
    min_share: int = 2  # k-mers held by fewer segments place nothing (a k-mer of one segment costs alike anywhere)
    sample_bits: int = 4  # 1 / 2^bits of the k-mers (by hash) place the segments: SILVA's 99,117-segment shard
    # 70.2 MB of postings in MinHash order, 44.6 after bisection by 1/16 of its k-mers (5.8 s), 44.3 by 1/8 (11.9 s)
    threads: int = 2  # the halves of a split bisected at once, each on its own thread (the same order as one thread)


@cache
def _lib():
    return load("gene_ae.index._order", "gene_ae/index/order.c",
                {"bp_order": ((P, P, I64, I64, P, I32, I32, I32), I32)})  # fmt: skip


_OTHER_HASH = 0xD6E8FEB86659FD93  # a second odd multiplier: a MinHash independent of KMER_HASH's
_SAMPLE_HASH = 0x94D049BB133111EB  # a third: the k-mers that place segments, independent of both minima


def minhash_keys(block: sparse.csr_matrix) -> np.ndarray:
    """[2, segments] the least of two hashes over each segment's k-mer columns (2^32 for a segment with none):
    segments sharing many k-mers share these minima (with chance their Jaccard similarity)."""
    cols = block.indices.astype(np.uint64)
    keys = np.full((2, block.shape[0]), 1 << 32, np.int64)
    held = np.diff(block.indptr) > 0
    if cols.size:
        starts = block.indptr[:-1][held]
        for i, mult in enumerate((KMER_HASH, _OTHER_HASH)):
            hashed = (cols * np.uint64(mult)) >> np.uint64(32)  # wraps mod 2^64: the multiplicative hash
            keys[i, held] = np.minimum.reduceat(hashed, starts)
    return keys


def neighbour_order(
    counts: sparse.csr_matrix, shares: np.ndarray, keys: np.ndarray, cfg: OrderConfig | None = None
) -> np.ndarray:
    """The order to store the segments in (order[i]: the segment stored at i): their MinHash order improved by
    bisection over a sample of the k-mers two or more of them hold. `counts`: segments x k-mer columns; `shares`:
    the segments holding each column; `keys`: minhash_keys of the segments."""
    cfg = cfg or OrderConfig()
    start = minhash_order(keys)
    cols = np.arange(shares.size, dtype=np.uint64)
    picked = ((cols * np.uint64(_SAMPLE_HASH)) >> np.uint64(64 - cfg.sample_bits) == 0) & (shares >= cfg.min_share)
    placing = counts[:, np.flatnonzero(picked)]  # segments x the sampled columns, renumbered from 0
    return bisection_order(placing.indptr, placing.indices, start, cfg)


def minhash_order(keys: np.ndarray) -> np.ndarray:
    """Segments sorted by their MinHash keys ([2, segments], minhash_keys): relatives, which share minima, side by
    side."""
    return np.lexsort(keys[::-1]).astype(np.int32)


def bisection_order(
    ptr: np.ndarray, terms: np.ndarray, start: np.ndarray, cfg: OrderConfig | None = None
) -> np.ndarray:
    """`start` (a permutation of the segments: order[i] the segment stored at i) improved by recursive graph
    bisection over the segments' k-mers (CSR: segment i holds terms[ptr[i]:ptr[i + 1]], each once)."""
    cfg = cfg or OrderConfig()
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    terms = np.ascontiguousarray(terms, dtype=np.int32)
    order = np.array(start, dtype=np.int32, copy=True)
    n_terms = int(terms.max()) + 1 if terms.size else 0
    if _lib().bp_order(at(ptr), at(terms), order.size, n_terms, at(order), cfg.rounds, cfg.leaf, cfg.threads) < 0:
        raise MemoryError(f"no memory to order {order.size:,} segments")
    return order


def vector_order(vectors: np.ndarray, leaf: int = 16, iterations: int = 6) -> np.ndarray:
    """The order to store records in where an index has no k-mers to order them by (`gene-ae embed --no-kmers`):
    records with near vectors side by side, by splitting at the median of the records' principal direction, half
    by half (a PCA tree) down to `leaf` records. A vector-first search's candidates are a query's nearest vectors,
    so they then sit in few sequence blocks, and relatives compress together. Seeded: the same vectors, the same
    order."""
    x = np.asarray(vectors, dtype=np.float32)
    order = np.arange(len(x), dtype=np.int64)
    rng = np.random.default_rng(0)
    start = rng.standard_normal(x.shape[1]).astype(np.float32) if x.ndim == 2 and x.shape[1] else None
    todo = [(0, len(x))]
    while todo:
        a, b = todo.pop()
        if b - a <= leaf or start is None:
            continue
        rows = order[a:b]
        part = x[rows]
        part -= part.mean(axis=0)
        direction = start
        for _ in range(iterations):  # power iteration: the direction along which these vectors spread most
            direction = part.T @ (part @ direction)
            norm = float(np.linalg.norm(direction))
            if norm == 0.0:
                break
            direction = direction / norm
        order[a:b] = rows[np.argsort(part @ direction, kind="stable")]
        middle = (a + b) // 2
        todo += [(middle, b), (a, middle)]
    return order
