"""Alignment identity (edlib): the ground truth of `gene-ae eval`, and search's optional second stage.

Vector search finds candidates without aligning against the whole collection; aligning a query to its
top few candidates then orders them by what users mean by "similar", the way seed-and-extend tools
confirm seeds. Only the first `max_bases` of each sequence are aligned, so genomes stay cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_BASES = 5000


def identity(x: np.ndarray, y: np.ndarray, max_bases: int = MAX_BASES) -> float:
    """1 - edit distance / longer length, global (NW) alignment of the first max_bases of each."""
    import edlib

    x, y = x[:max_bases], y[:max_bases]
    longest = max(x.size, y.size)
    if longest == 0:
        return 1.0
    dist = edlib.align(x.tobytes(), y.tobytes(), mode="NW", task="distance")["editDistance"]
    return 1.0 - dist / longest


def pair_identities(a: Sequence[np.ndarray], b: Sequence[np.ndarray], max_bases: int = MAX_BASES) -> np.ndarray:
    """identity() of each pair (a[i], b[i])."""
    return np.array([identity(x, y, max_bases) for x, y in zip(a, b)], dtype=np.float64)


def rerank(
    query: np.ndarray, candidates: Sequence[np.ndarray], max_bases: int = MAX_BASES
) -> tuple[np.ndarray, np.ndarray]:
    """Order candidates by identity to the query (best first; ties keep the vector search's order).

    Returns (order, identities in that order)."""
    ids = pair_identities([query] * len(candidates), candidates, max_bases)
    order = np.argsort(-ids, kind="stable")
    return order, ids[order]
