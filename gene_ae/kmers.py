"""k-mer codes of token arrays in numpy: the one implementation behind the exact sparse index and the
k-mer baselines (the model's bags have their own, in torch: `model.kmer_ids`).

A k-mer's code is its bases in 2 bits each (A, C, G, T = 0..3), the first base most significant; its
reverse complement's code is built in the same pass, so canonical codes cost one extra shift per base.
"""

from __future__ import annotations

import numpy as np

from shard_tools.alphabet import FIRST_BASE

MAX_K = 31  # 2k bits must fit a uint64


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
