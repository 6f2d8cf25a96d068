"""The one top-k: the k best scores of each row, best first; equal scores in index order."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, k'] int64, scores [q, k']) of the k largest entries of each row of `scores` [q, n],
    k' = min(k, n). Ties go to the lower index, also at the k-th place: one rule for every search."""
    scores = np.asarray(scores)
    q, n = scores.shape
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros((q, 0), np.int64), np.zeros((q, 0), scores.dtype)
    if k < n:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above = scores > kth
        tied = scores == kth
        need = k - above.sum(1, keepdims=True)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
        part = np.nonzero(chosen)[1].reshape(q, k)  # each row's chosen columns, in index order
    else:
        part = np.broadcast_to(np.arange(n), (q, n))
    vals = np.take_along_axis(scores, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")  # stable over index order: ties keep the lower index
    return np.take_along_axis(part, order, 1).astype(np.int64), np.take_along_axis(vals, order, 1)
