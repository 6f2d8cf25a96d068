"""Re-ranking by alignment: a query's candidates aligned (gene_ae/search/align.py) and ordered by identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from gene_ae.search import align
from gene_ae.search.hits import Hit, Subject


def rerank(query: np.ndarray, hits: list[Hit], subject: Subject, top: int, keep: int = 0) -> list[Hit]:
    """The first `top` hits ordered by alignment identity to the query (gene_ae.search.align.align_hit; ties keep
    the candidate order), with the aligned region; hits past `top` follow unchanged, without an identity.

    `keep` > 0: only the first `keep` of the result are wanted. Once `keep` hits are aligned, a candidate is
    aligned only as far as it could still beat the keep-th best so far (align_hit's `above`); one that cannot
    follows the aligned hits without an identity. The first `keep` are the same as without it."""
    head, beaten = [], []
    oriented = align.Oriented(query) if top and query.size <= align.LONG else None
    for h in hits[:top]:
        full = subject(h.subject)
        a, b, strand = _region(h, full.size, query.size, oriented, full)
        bound = sorted((x.identity for x in head), reverse=True)[keep - 1] if keep and len(head) >= keep else 0.0
        found = align.align_hit(query, full[a:b], a, above=bound, oriented=oriented, record_length=full.size,
                                strand=strand)  # fmt: skip
        if found is None:
            beaten.append(h)
            continue
        head.append(replace(h, identity=found.identity, subject_start=found.subject_start,
                            subject_end=found.subject_end, strand=found.strand, query_start=found.query_start,
                            query_end=found.query_end, cigar=found.cigar))  # fmt: skip
    order = sorted(range(len(head)), key=lambda i: -head[i].identity)
    return [head[i] for i in order] + beaten + hits[top:]


# A region to align (a voted segment widened by a query length each side, or the record) over this many times the
# query's length is aligned only around the band of diagonals holding the most of the query's k-mers: an edlib
# infix costs query x region, and the grown loci's queries up to 4 kb spent a quarter of their run aligning over
# 8 kb segments and more of their long candidates (docs/BENCHMARKS.md, stop 35).
PLACE_ABOVE = 3
# The bases each side of the placed diagonal aligned too: indels move a copy's bases off its first base's
# diagonal (a 30 % copy's ~10 % indels drift tens of bases over 4 kb; this allows a fifth of the query, at least 64)
PLACE_SLACK = 0.2


def _region(
    hit: Hit, length: int, query_length: int, oriented: align.Oriented | None = None, full: np.ndarray | None = None
) -> tuple[int, int, str | None]:
    """(start, end, strand) of the part of a subject worth aligning: its voted region (a k-mer segment) widened by a
    query length on each side, or all of it when no narrower region is known; and within that, when it is over
    PLACE_ABOVE query lengths, the query's span on the band of diagonals holding the most of its k-mers
    (`oriented`'s Placement over that region of `full`, the record), the band's width wider each side, with the
    strand the placement's k-mers choose for it (None: not placed, the aligner chooses). All of the record for a
    long query."""
    if query_length > align.LONG:
        return 0, length, None
    a, b = 0, length
    if hit.subject_start < hit.subject_end and hit.subject_end - hit.subject_start < length:
        a, b = max(0, hit.subject_start - query_length), min(length, hit.subject_end + query_length)
    if oriented is None or full is None or b - a <= PLACE_ABOVE * query_length:
        return a, b, None
    slack = max(64, int(PLACE_SLACK * query_length))
    placed = oriented.place(full[a:b], slack)
    if not placed.shared:
        return a, b, None
    return a + placed.start, a + placed.end, placed.strand


def rerank_rows(
    queries: Sequence[np.ndarray], idx: np.ndarray, subject: Subject, top: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`rerank` over rows of candidate indices (-1 = no hit): (indices [q, k], identities [q, k]), with -1
    for the identity of hits past `top` and of misses."""
    k = min(k, idx.shape[1])
    out_idx = np.full((len(queries), k), -1, dtype=np.int64)
    out_sim = np.full((len(queries), k), -1.0, dtype=np.float32)
    for row, query in enumerate(queries):
        hits = [Hit(int(j), 0.0) for j in idx[row] if j >= 0]
        ranked = rerank(query, hits, subject, top, keep=k)[:k]
        out_idx[row, : len(ranked)] = [h.subject for h in ranked]
        out_sim[row, : len(ranked)] = [h.identity if h.identity is not None else -1.0 for h in ranked]
    return out_idx, out_sim
