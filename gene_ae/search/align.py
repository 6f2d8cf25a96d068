"""Alignment identity: the ground truth of `gene-ae eval`, and the last stage of search.

Candidates are found without aligning against the whole collection; aligning a query to its top few
candidates then orders them by what users mean by "similar", the way seed-and-extend tools confirm seeds.
`identity` (global, the first `max_bases`) is evaluation's pair measure; `align_hit` is search's: global
for genes of similar length, infix or minimap2 (local) for partial and long sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


# ---------------------------------------------------------------------------------- re-ranking search hits

LONG = 20_000  # queries longer than this are mapped with minimap2 (mappy); shorter ones aligned by edlib
SIMILAR = 0.8  # shorter / longer length at or above which two sequences are aligned globally (NW)


@dataclass
class Alignment:
    """How well a query matches a subject: identity in [0, 1] and the subject region it matches
    (0-based, end exclusive)."""

    identity: float
    subject_start: int
    subject_end: int


def align_hit(query: np.ndarray, subject: np.ndarray, offset: int = 0, above: float = 0.0) -> Alignment | None:
    """The alignment search re-ranks by, chosen by lengths:

    - similar lengths (genes against genes): edlib global (NW) over the whole of both, 1 - distance / longer;
    - a short query in a longer subject, or a short subject in a longer query: edlib infix (HW) of the
      shorter in the longer, (shorter - distance) / query length, so a partial query is judged on the part
      it matches, while a subject covering only part of the query scores by how much of the query it holds;
    - a query longer than LONG: minimap2 (mappy, map-ont preset, both strands), matching bases of the
      primary chains / query length: local, and fast on whole loci and genomes.
    `subject` may be a region of the record starting at `offset`; the region reported is in record terms.
    `above` > 0: None when the identity is surely not above it. edlib then stops at the edit distance that
    identity allows (a band of that width), so a subject that cannot beat the hits already found costs less.
    """
    short, long_ = sorted((query.size, subject.size))
    if short == 0:
        return Alignment(0.0, offset, offset) if above <= 0 else None
    if query.size > LONG:
        return _mappy(query, subject, offset)
    if short / long_ >= SIMILAR:
        return _global(query, subject, offset, _bound((1.0 - above) * long_) if above > 0 else None)
    return _infix(query, subject, offset, above)


def _bound(distance: float) -> int:
    """The largest whole edit distance strictly below `distance` (a tie with the bound is not above it)."""
    return int(np.ceil(distance - 1e-9)) - 1


def _global(query: np.ndarray, subject: np.ndarray, offset: int, k: int | None) -> Alignment | None:
    """identity() of the whole of both; k: None, or the largest edit distance worth knowing (else None)."""
    import edlib

    longest, end = max(query.size, subject.size), offset + subject.size
    if k is None:
        return Alignment(identity(query, subject, max_bases=longest), offset, end)
    if k < 0:
        return None
    dist = edlib.align(query.tobytes(), subject.tobytes(), mode="NW", task="distance", k=k)["editDistance"]
    return None if dist < 0 else Alignment(1.0 - dist / longest, offset, end)


def _infix(query: np.ndarray, subject: np.ndarray, offset: int, above: float = 0.0) -> Alignment | None:
    import edlib

    inner, outer = (query, subject) if query.size <= subject.size else (subject, query)
    k = _bound(inner.size - above * query.size) if above > 0 else -1  # edlib's -1: no bound
    if above > 0 and k < 0:
        return None
    found = edlib.align(inner.tobytes(), outer.tobytes(), mode="HW", task="locations", k=k)
    if found["editDistance"] < 0:
        return None
    ident = max(0.0, inner.size - found["editDistance"]) / query.size
    if inner is query and found["locations"]:
        start, end = found["locations"][0]
        return Alignment(ident, offset + start, offset + end + 1)
    return Alignment(ident, offset, offset + subject.size)


def _mappy(query: np.ndarray, subject: np.ndarray, offset: int) -> Alignment:
    import mappy

    from shard_tools.alphabet import decode

    aligner = mappy.Aligner(seq=decode(subject), preset="map-ont")
    hits = [h for h in aligner.map(decode(query)) if h.is_primary]
    if not hits:
        return Alignment(0.0, offset, offset)
    matched = sum(h.mlen for h in hits)
    start, end = min(h.r_st for h in hits), max(h.r_en for h in hits)
    return Alignment(min(1.0, matched / query.size), offset + start, offset + end)
