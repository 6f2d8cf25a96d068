"""Search as a library: query token arrays -> ranked hits, the way `gene-ae search` answers.

Three candidate lists per query, each a ranking of records:
- dense: the query's vector against one vector per record (faiss);
- windows: the query's windows against the windows of long records; every query window votes for the
  records its nearest windows belong to (seed-and-vote), which also locates the matching region;
- sparse: the query's k-mer segments against the exact k-mer index (gene_ae/index/kmer_index.py), voting
  likewise.
They are fused by reciprocal rank fusion (a record's score is the sum over lists of 1 / (RRF_K + rank)),
and the top `rerank` of every list (`alignment_pool`) are aligned to the query (gene_ae/search/align.py)
and ordered by identity. The evaluation's "+align" methods re-rank with the same `rerank`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gene_ae.core.windows import window_starts
from gene_ae.index.directory import IndexDir
from gene_ae.index.kmer_index import segment_starts
from gene_ae.index.vectors import search as search_vectors
from gene_ae.search import align
from shard_tools.alphabet import FIRST_BASE

Subject = Callable[[int], np.ndarray]  # record position -> its tokens (what a hit is aligned against)
Embed = Callable[[list[np.ndarray]], np.ndarray]
SOURCES = ("dense", "windows", "sparse")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009); ranks past ~60 barely count
# Candidates aligned per list by default, chosen on the chimp genes (a validation set no report uses; 200
# copies per divergence, benchmarks/search_bench.py --parts depth): recall@1 at 30 % was 0.215 without
# alignment and 0.975 / 0.980 / 0.985 / 0.985 / 0.990 at depth 5 / 10 / 20 / 30 / 50, for 58 / 67 / 102 /
# 145 / 287 ms a query; 20 is within 0.005 of depth 50 at a third of its cost.
DEFAULT_RERANK = 20


@dataclass
class Hit:
    """One subject found for a query: its position in the index, the candidate score (fused, or the
    vector similarity), the alignment identity once re-ranked, and the subject's matching region
    (0-based, end exclusive)."""

    subject: int
    score: float
    identity: float | None = None
    subject_start: int = 0
    subject_end: int = 0
    similarity: float | None = None  # cosine of the record vectors, when the dense list found it


@dataclass
class SearchConfig:
    k: int = 10  # hits per query
    rerank: int = DEFAULT_RERANK  # align the top N of every candidate list, order them by identity; 0 = off
    candidates: int = 50  # records taken from each candidate list before fusion
    sources: tuple[str, ...] = SOURCES  # which candidate lists to fuse
    batch_size: int = 64


# ------------------------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    record: int
    score: float
    start: int = 0
    end: int = 0


def dense_candidates(
    opened: IndexDir, vectors: np.ndarray, n: int, allowed: np.ndarray | None = None
) -> list[list[Candidate]]:
    """Records by cosine of whole-record vectors (only `allowed` records, a boolean mask, when given)."""
    idx, sims = search_vectors(opened.dense, vectors, n, None if allowed is None else np.flatnonzero(allowed))
    meta = opened.meta
    return [
        [Candidate(int(j), float(s), 0, meta.entries[j].length) for j, s in zip(row, sim) if j >= 0]
        for row, sim in zip(idx, sims)
    ]


def vote(hit_owner: np.ndarray, hit_score: np.ndarray, hit_start: np.ndarray, hit_end: np.ndarray, n: int):
    """Seed-and-vote for one query: rows are the query's pieces, columns their nearest subject pieces.

    A record's score is the sum over query pieces of its best piece's score; its region spans the pieces
    that gave those best scores. Returns the top n Candidates."""
    best: dict[int, list[float | int]] = {}
    for row in range(hit_owner.shape[0]):
        seen: set[int] = set()
        for o, s, a, b in zip(hit_owner[row], hit_score[row], hit_start[row], hit_end[row]):
            if o < 0 or o in seen:
                continue
            seen.add(int(o))
            cur = best.setdefault(int(o), [0.0, int(a), int(b)])
            cur[0] += float(s)
            cur[1], cur[2] = min(cur[1], int(a)), max(cur[2], int(b))
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:n]
    return [Candidate(o, float(s), int(a), int(b)) for o, (s, a, b) in ranked]


def window_candidates(
    opened: IndexDir, queries: Sequence[np.ndarray], embed: Embed, n: int, allowed: np.ndarray | None = None
) -> list[list[Candidate]]:
    """Records by the votes of the query's windows (the whole query when it fits one window)."""
    w = opened.meta.window
    pieces, rows = [], []
    for q, query in enumerate(queries):
        for a in window_starts(int(query.size), w, max(w // 2, 1)):
            pieces.append(query[a : a + w])
            rows.append(q)
    ids = None if allowed is None else np.flatnonzero(allowed[opened.window_owner])
    idx, sims = search_vectors(opened.windows, embed(pieces), n, ids)
    return _votes(rows, len(queries), idx, sims, opened.window_owner, opened.window_start, opened.window_end, n)


def sparse_candidates(
    opened: IndexDir, queries: Sequence[np.ndarray], n: int, allowed: np.ndarray | None = None
) -> list[list[Candidate]]:
    """Records by the votes of the query's k-mer segments."""
    kmers = opened.kmers
    pieces, rows = [], []
    for q, query in enumerate(queries):
        for a in segment_starts(int(query.size), kmers.cfg.segment):
            pieces.append(query[a : a + kmers.cfg.segment])
            rows.append(q)
    idx, sims = kmers.search_segments(pieces, n, None if allowed is None else allowed[kmers.owner])
    return _votes(rows, len(queries), idx, sims, kmers.owner, kmers.start, kmers.end, n)


def _votes(rows, n_queries, idx, sims, owner, start, end, n) -> list[list[Candidate]]:
    rows = np.asarray(rows)
    out = []
    for q in range(n_queries):
        sel = rows == q
        piece_idx = idx[sel]
        safe = np.maximum(piece_idx, 0)
        own = np.where(piece_idx >= 0, owner[safe], -1)
        out.append(vote(own, sims[sel], start[safe], end[safe], n))
    return out


def fuse(lists: Sequence[list[Candidate]], rrf_k: int = RRF_K) -> list[Candidate]:
    """Reciprocal rank fusion of candidate lists; a record keeps the region of the first list that found
    it with a region narrower than the whole record (windows before sparse), else of the first list."""
    score: dict[int, float] = {}
    region: dict[int, tuple[int, int]] = {}
    for cands in lists:
        for rank, c in enumerate(cands, start=1):
            score[c.record] = score.get(c.record, 0.0) + 1.0 / (rrf_k + rank)
            old = region.get(c.record)
            if old is None or (old[1] - old[0] > c.end - c.start > 0):
                region[c.record] = (c.start, c.end)
    ranked = sorted(score, key=lambda r: -score[r])
    return [Candidate(r, score[r], *region[r]) for r in ranked]


def alignment_pool(lists: Sequence[list[Candidate]], fused: list[Candidate], size: int) -> list[Candidate]:
    """The candidates to align: the top `size` of every list (so a list that alone finds the answer, as
    exact k-mers do for a 30 % copy the vectors miss, is never outvoted by the others), in fused order,
    followed by the rest of the fused ranking. At most len(lists) * size are aligned."""
    chosen = {c.record for cands in lists for c in cands[:size]}
    return [c for c in fused if c.record in chosen] + [c for c in fused if c.record not in chosen]


# -------------------------------------------------------------------------------------------- re-ranking


def rerank(query: np.ndarray, hits: list[Hit], subject: Subject, top: int) -> list[Hit]:
    """The first `top` hits ordered by alignment identity to the query (gene_ae.search.align.align_hit; ties keep
    the candidate order), with the aligned region; hits past `top` follow unchanged, without an identity."""
    head = []
    for h in hits[:top]:
        full = subject(h.subject)
        a, b = _region(h, full.size, query.size)
        found = align.align_hit(query, full[a:b], a)
        head.append(
            replace(h, identity=found.identity, subject_start=found.subject_start, subject_end=found.subject_end)
        )
    order = sorted(range(len(head)), key=lambda i: -head[i].identity)
    return [head[i] for i in order] + hits[top:]


def _region(hit: Hit, length: int, query_length: int) -> tuple[int, int]:
    """The part of a subject worth aligning: its voted region widened by a query length on each side,
    or all of it when no narrower region is known or the query is long."""
    if (
        query_length > align.LONG
        or hit.subject_end <= hit.subject_start
        or hit.subject_end - hit.subject_start >= length
    ):
        return 0, length
    return max(0, hit.subject_start - query_length), min(length, hit.subject_end + query_length)


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
        ranked = rerank(query, hits, subject, top)[:k]
        out_idx[row, : len(ranked)] = [h.subject for h in ranked]
        out_sim[row, : len(ranked)] = [h.identity if h.identity is not None else -1.0 for h in ranked]
    return out_idx, out_sim


# ---------------------------------------------------------------------------------------------- checks

SAME_MODEL_COSINE = 0.99  # a model re-embedding stored records must give the index's vectors back this closely
PROVENANCE_RECORDS = 4  # the shortest records re-embedded for the check (cheap whatever the collection)


def model_agreement(opened: IndexDir, embed: Embed) -> float:
    """The lowest cosine between the index's vectors of a few stored records and `embed`'s vectors of the
    same records: 1.0 for the model that built the index, far lower for another model or one whose weights
    went NaN (then -1.0). 1.0 when the index holds no sequences to re-embed."""
    if opened.sequences is None or not opened.meta.entries:
        return 1.0
    lengths = np.array([e.length for e in opened.meta.entries])
    rows = np.sort(np.argsort(lengths, kind="stable")[:PROVENANCE_RECORDS])
    stored = opened.record_vectors(rows)
    fresh = np.asarray(embed([opened.sequences[int(r)] for r in rows]), dtype=np.float32)
    if not np.isfinite(fresh).all():
        return -1.0
    return float(np.min(np.einsum("ij,ij->i", stored, fresh)))


def check_queries(opened: IndexDir, queries: Sequence, source: str) -> None:
    """Refuse a query with no k-mer of real bases (shorter than k, or all N): every list would answer it
    by chance. k is the index's exact k-mer size (or the model window's smallest scale without one)."""
    from gene_ae.core.kmers import kmer_codes

    k = opened.kmers.cfg.k if opened.kmers is not None else 8
    for q in queries:
        if not kmer_codes(q.tokens, k)[1].any():
            real = int(((q.tokens >= FIRST_BASE) & (q.tokens < FIRST_BASE + 4)).sum())
            raise ValueError(
                f"{source}: record {q.id!r}: no {k} consecutive A/C/G/T bases ({q.tokens.size:,} bases, {real:,} "
                "of them A/C/G/T): too short or too many N to search"
            )


# ------------------------------------------------------------------------------------------------ search


def search(
    opened: IndexDir,
    queries: Sequence[np.ndarray],
    embed: Embed | None,
    cfg: SearchConfig,
    subject: Subject | None = None,
    allowed: np.ndarray | None = None,
) -> list[list[Hit]]:
    """Ranked hits per query. `embed` turns token arrays into the index model's vectors (None: no dense
    lists); `subject` gives a record's tokens for re-ranking (default: the sequences stored in the index);
    `allowed` (a boolean mask over records, from a --where filter) restricts every candidate list before
    it ranks, so the records that pass are ranked as in an index holding only them."""
    if cfg.k < 1 or cfg.rerank < 0:
        raise ValueError(f"k must be >= 1 and rerank >= 0, got k={cfg.k}, rerank={cfg.rerank}")
    unknown = set(cfg.sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown candidate source(s) {sorted(unknown)} (known: {', '.join(SOURCES)})")
    if cfg.rerank and subject is None:
        if opened.sequences is None:
            raise ValueError(
                "this index holds no sequences (made by an older gene-ae): give --collection or --rerank 0"
            )
        subject = opened.sequences.__getitem__
    n = max(cfg.candidates, cfg.k, cfg.rerank)
    lists: list[list[list[Candidate]]] = []
    if "dense" in cfg.sources and embed is not None:
        lists.append(dense_candidates(opened, embed(list(queries)), n, allowed))
    if "windows" in cfg.sources and embed is not None and opened.windows is not None:
        lists.append(window_candidates(opened, queries, embed, n, allowed))
    if "sparse" in cfg.sources and opened.kmers is not None:
        lists.append(sparse_candidates(opened, queries, n, allowed))
    if not lists:
        raise ValueError(f"no candidate source available in this index among {', '.join(cfg.sources)}")
    similarity = {}
    if "dense" in cfg.sources and embed is not None:
        similarity = [{c.record: c.score for c in row} for row in lists[0]]
    out = []
    for q, query in enumerate(queries):
        fused = fuse([lst[q] for lst in lists]) if len(lists) > 1 else lists[0][q]
        top = cfg.rerank
        if cfg.rerank and len(lists) > 1:
            fused = alignment_pool([lst[q] for lst in lists], fused, cfg.rerank)
            top = len({c.record for lst in lists for c in lst[q][: cfg.rerank]})
        hits = [
            Hit(c.record, c.score, None, c.start, c.end, similarity[q].get(c.record) if similarity else None)
            for c in fused[: max(n, top)]
        ]
        if cfg.rerank:
            hits = rerank(query, hits, subject, top)
        out.append(hits[: cfg.k])
    return out
