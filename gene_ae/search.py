"""Search as a library: query token arrays -> ranked hits, re-ranked by alignment.

`gene-ae search` and the evaluation's "+align" methods both call `rerank`, so there is one way of turning
vector candidates into an alignment-ordered list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gene_ae import align
from gene_ae.index import search as index_search

Subject = Callable[[int], np.ndarray]  # entry position -> its tokens (what a hit is aligned against)


@dataclass
class Hit:
    """One subject found for a query: its position in the index, the candidate score, and after
    re-ranking the alignment identity; start/end are the subject's matching region (0-based, end exclusive)."""

    subject: int
    score: float
    identity: float | None = None
    subject_start: int = 0
    subject_end: int = 0


def rerank(
    query: np.ndarray, hits: list[Hit], subject: Subject, top: int, max_bases: int = align.MAX_BASES
) -> list[Hit]:
    """The first `top` hits ordered by alignment identity to the query (ties keep the candidate order);
    hits past `top` follow unchanged, without an identity."""
    head = hits[:top]
    order, ident = align.rerank(query, [subject(h.subject) for h in head], max_bases)
    return [replace(head[o], identity=float(i)) for o, i in zip(order, ident)] + hits[top:]


def rerank_rows(
    queries: Sequence[np.ndarray], idx: np.ndarray, subject: Subject, top: int, k: int, max_bases: int = align.MAX_BASES
) -> tuple[np.ndarray, np.ndarray]:
    """`rerank` over rows of candidate indices (-1 = no hit): (indices [q, k], identities [q, k]), with -1
    for the identity of hits past `top` and of misses."""
    k = min(k, idx.shape[1])
    out_idx = np.full((len(queries), k), -1, dtype=np.int64)
    out_sim = np.full((len(queries), k), -1.0, dtype=np.float32)
    for row, query in enumerate(queries):
        hits = [Hit(int(j), 0.0) for j in idx[row] if j >= 0]
        ranked = rerank(query, hits, subject, top, max_bases)[:k]
        out_idx[row, : len(ranked)] = [h.subject for h in ranked]
        out_sim[row, : len(ranked)] = [h.identity if h.identity is not None else -1.0 for h in ranked]
    return out_idx, out_sim


@dataclass
class SearchConfig:
    k: int = 10  # hits per query
    rerank: int = 0  # align each query to its top N candidates and order them by identity; 0 = off
    batch_size: int = 64  # query embedding batch size


def search(
    faiss_index, meta, query_vectors: np.ndarray, queries: Sequence[np.ndarray], cfg: SearchConfig, subject: Subject
) -> list[list[Hit]]:
    """Ranked hits per query: vector candidates (one per record, or per window of a `--windows` index),
    the first cfg.rerank of them re-ordered by alignment against `subject(entry)`."""
    depth = max(cfg.k, cfg.rerank)
    idx, sims = index_search(faiss_index, query_vectors, depth * (4 if meta.windows else 1))
    out = []
    for query, row_idx, row_sims in zip(queries, idx, sims):
        hits, seen = [], set()
        for j, sim in zip(row_idx, row_sims):
            e = meta.entries[j] if j >= 0 else None
            key = e and ((e.id, e.start) if meta.windows else e.id)
            if e is None or key in seen or len(hits) >= depth:
                continue
            seen.add(key)
            hits.append(Hit(int(j), float(sim), None, e.start, e.end))
        if cfg.rerank:
            hits = rerank(query, hits, subject, cfg.rerank)
        out.append(hits[: cfg.k])
    return out
