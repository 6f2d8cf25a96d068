"""Candidate lists: each source's nearest pieces, gathered from every shard, merged, then turned into records.

Three sources per query, each a ranking of records:
- dense: the query's vector against one vector per record (faiss);
- windows: the query's windows against the windows of long records; every query window votes for the
  records its nearest windows belong to (seed-and-vote), which also locates the matching region;
- sparse: the query's k-mer segments against the exact k-mer index (gene_ae/index/kmer_index.py), voting
  likewise.
Each shard returns the n nearest pieces of every query piece (`PieceHits`, records in global positions);
`PieceHits.merge` keeps the n best over all shards, which are the n nearest of one index holding every
shard's records, and only then do pieces vote. So a sharded collection ranks as one index would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gene_ae.core.embedding import Embed
from gene_ae.core.kmers import CountRows
from gene_ae.core.topk import top_k
from gene_ae.core.windows import window_starts
from gene_ae.index.directory import IndexDir
from gene_ae.index.kmer_index import KmerIndex, segment_starts
from gene_ae.index.vectors import search as search_vectors

SOURCES = ("dense", "windows", "sparse")
DEFAULT_SOURCES = ("sparse",)  # chosen on val (gene_ae/search/engine.py SearchConfig.sources)


@dataclass
class Candidate:
    record: int
    score: float
    start: int = 0
    end: int = 0


@dataclass
class PieceHits:
    """The n nearest pieces of each query piece in one source: `rows[p]` is the query piece p belongs to;
    owner, score, start, end are [P, n] (owner -1: no hit), records in global positions."""

    rows: np.ndarray
    owner: np.ndarray
    score: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def narrowed(self) -> PieceHits:
        """The same hits in 32-bit columns where they fit (a gene query's pool: 2,000 a shard, ~32 KB, not 56)."""
        if max(int(self.owner.max(initial=0)), int(self.end.max(initial=0))) >= 2**31:
            return self
        owner, start, end = (a.astype(np.int32) for a in (self.owner, self.start, self.end))
        return PieceHits(self.rows, owner, self.score, start, end)

    @staticmethod
    def merge(parts: Sequence[PieceHits], n: int) -> PieceHits:
        """The n best hits of each piece over all parts (same pieces in each), best first."""
        if len(parts) == 1:
            return parts[0]
        columns = {f: np.concatenate([getattr(p, f) for p in parts], 1) for f in ("owner", "score", "start", "end")}
        idx, _ = top_k(np.where(columns["owner"] >= 0, columns["score"], -np.inf), n)
        picked = {f: np.take_along_axis(a, idx, 1) for f, a in columns.items()}
        return PieceHits(parts[0].rows, **picked)


@dataclass
class QueryPieces:
    """What every shard is asked, computed once: the query vectors, window pieces and k-mer segments."""

    vectors: np.ndarray | None = None
    window_rows: np.ndarray | None = None
    window_vectors: np.ndarray | None = None
    segment_rows: np.ndarray | None = None
    segments: list[np.ndarray] | None = None
    segment_thin: np.ndarray | None = None  # per segment: it is a piece of a long query (LONG_QUERY_SHARE read)
    # the segments' k-mer counts, made by the first shard that reads them and kept for the others (every shard of
    # a collection has the same k-mer settings; 15 ms a query at 10^6 genes when each of 13 shards made them)
    segment_counts: tuple[tuple, object] | None = None
    # > 0: each gene query's piece (one piece: the whole query) is also answered with its best `pool` k-mer segments,
    # as the list "pool": the candidates a remote query's deep search picks from (gene_ae/search/depth.py)
    pool: int = 0

    def part(self, first: int, end: int) -> QueryPieces:
        """The pieces of queries first..end-1, renumbered from 0: what `of` makes for those queries alone, but with
        the vectors embedded with all of them, so that a thread searching some queries (engine.search's threads)
        reads what one thread searching all of them reads. Slices: each query's pieces are consecutive."""
        out = QueryPieces(vectors=None if self.vectors is None else self.vectors[first:end], pool=self.pool)
        if self.window_rows is not None:
            a, b = np.searchsorted(self.window_rows, [first, end])
            out.window_rows, out.window_vectors = self.window_rows[a:b] - first, self.window_vectors[a:b]
        if self.segment_rows is not None:
            a, b = np.searchsorted(self.segment_rows, [first, end])
            out.segment_rows, out.segments = self.segment_rows[a:b] - first, self.segments[a:b]
            out.segment_thin = self.segment_thin[a:b]
        return out

    @classmethod
    def of(cls, queries: Sequence[np.ndarray], embed: Embed | None, window: int, segment: int | None,
           sources: Sequence[str], features: Mapping[str, Sequence] | None = None, pool: int = 0,
           ) -> QueryPieces:  # fmt: skip
        """`features` (name -> one value per query) go to `embed` with the query vectors and, per owner, with
        the window pieces: only for a model whose vector takes features. `pool`: see the field."""
        out = cls(pool=pool)

        def vectors(pieces: list[np.ndarray], rows: Sequence[int]) -> np.ndarray:
            given = {} if features is None else {"features": {k: [v[r] for r in rows] for k, v in features.items()}}
            return np.asarray(embed(pieces, **given), dtype=np.float32)

        if embed is not None and "dense" in sources:
            out.vectors = vectors(list(queries), range(len(queries)))
        if embed is not None and "windows" in sources and window:
            rows, pieces = _pieces(queries, window, max(window // 2, 1))
            out.window_rows, out.window_vectors = rows, vectors(pieces, rows)
        if segment is not None and "sparse" in sources:
            out.segment_rows, out.segments = _pieces(queries, segment, 0, query_piece_starts)
            out.segment_thin = np.array([queries[q].size > 2 * QUERY_PIECE for q in out.segment_rows], dtype=bool)
        return out


QUERY_PIECE = 2048  # a query longer than twice this votes in pieces of this many bases, half overlapping
# A long query's pieces read 1 in this many of their k-mers (the same ones in every piece and record, by hash): a
# 2 kb piece of a locus still shares tens of k-mers with a 30 % copy, and at 10-mers in a 100 Mb collection each
# k-mer holds ~100 postings by chance, which were most of a long query's time.
LONG_QUERY_SHARE = 4


def query_piece_starts(n: int, segment: int) -> list[tuple[int, int]]:
    """(start, end) of the pieces a query's k-mers vote in: the whole query up to 2 QUERY_PIECE bases (a gene),
    else pieces of QUERY_PIECE bases, half overlapping, so each record a long query holds gets the votes of its
    own part (in whole-segment pieces, the near relatives of the first records a query holds took every place)."""
    width = n if n <= 2 * QUERY_PIECE else min(QUERY_PIECE, segment)
    return [(int(a), int(a) + width) for a in segment_starts(n, width)]


def _pieces(queries: Sequence[np.ndarray], width: int, stride: int, spans=None) -> tuple[np.ndarray, list]:
    rows, pieces = [], []
    for q, query in enumerate(queries):
        n = int(query.size)
        for a, b in spans(n, width) if spans else ((a, a + width) for a in window_starts(n, width, stride)):
            pieces.append(query[a:b])
            rows.append(q)
    return np.asarray(rows, dtype=np.int64), pieces


def shard_hits(
    shard: IndexDir, offset: int, asked: QueryPieces, n: int, allowed: np.ndarray | None
) -> dict[str, PieceHits]:
    """Each source's n nearest pieces in one shard (`allowed`: this shard's records search may return)."""
    out: dict[str, PieceHits] = {}
    ids = None if allowed is None else np.flatnonzero(allowed)
    if asked.vectors is not None:
        idx, sims = search_vectors(shard.dense, asked.vectors, n, ids)
        rows = np.arange(len(asked.vectors))
        ends = np.append(shard.lengths, 0)[idx]  # a miss (-1) ends at 0
        out["dense"] = PieceHits(rows, _owner(idx, offset), sims, np.zeros_like(idx), ends)
    if asked.window_vectors is not None and shard.windows is not None:
        win_ids = None if allowed is None else np.flatnonzero(allowed[shard.window_owner])
        idx, sims = search_vectors(shard.windows, asked.window_vectors, n, win_ids)
        safe = np.maximum(idx, 0)
        owner = np.where(idx >= 0, shard.window_owner[safe] + offset, -1)
        out["windows"] = PieceHits(asked.window_rows, owner, sims, shard.window_start[safe], shard.window_end[safe])
    if asked.segments is not None and shard.kmers is not None:
        kmers = shard.kmers
        keep = None if allowed is None else allowed[kmers.owner]
        genes = ~asked.segment_thin if asked.pool > n else None  # a gene query's one piece
        found = kmers.search_segments(asked.segments, n, keep, segment_counts(kmers, asked), genes, asked.pool)
        lists = [("sparse", asked.segment_rows, found[:2])]
        if genes is not None:
            lists.append(("pool", asked.segment_rows[genes], found[2:]))
        for name, rows, (idx, sims) in lists:
            safe = np.maximum(idx, 0)
            owner = np.where(idx >= 0, kmers.owner[safe] + offset, -1)
            hits = PieceHits(rows, owner, sims, kmers.start[safe], kmers.end[safe])
            out[name] = hits.narrowed() if name == "pool" else hits
    return out


def pool_candidates(per_shard: Sequence[Mapping[str, PieceHits]], q: int, n: int) -> list[Candidate]:
    """Query q's "pool" list (a gene query's best n k-mer segments, QueryPieces.pool) merged over the shards: its
    records best first, each once (at its best segment); empty where the shards gave none."""
    parts = [hits["pool"] for hits in per_shard if "pool" in hits]
    rows = [np.flatnonzero(p.rows == q) for p in parts]
    parts = [PieceHits(p.rows[r], p.owner[r], p.score[r], p.start[r], p.end[r]) for p, r in zip(parts, rows) if r.size]
    if not parts:
        return []
    merged = PieceHits.merge(parts, n)
    owner = merged.owner[0]
    keep = np.flatnonzero(owner >= 0)
    if not keep.size:
        return []
    by = np.argsort(owner[keep], kind="stable")  # each record's best segment: its first (not np.unique: numpy.ma)
    first = by[np.r_[True, owner[keep][by][1:] != owner[keep][by][:-1]]]
    keep = keep[np.sort(first)]
    return [Candidate(int(o), float(c), int(a), int(b)) for o, c, a, b in zip(
        owner[keep], merged.score[0, keep], merged.start[0, keep], merged.end[0, keep])]  # fmt: skip


def segment_counts(kmers: KmerIndex, asked: QueryPieces) -> CountRows:
    """The asked segments' k-mer counts as `kmers` counts them, made once for every shard of the same settings
    (kept in `asked`; a search of the shards on several threads makes them before it starts them)."""
    key = (kmers.cfg.k, kmers.cfg.bucket_bits, kmers.cfg.scaled)
    if asked.segment_counts is None or asked.segment_counts[0] != key:
        counts = kmers.query_matrix(asked.segments)
        if asked.segment_thin is not None and asked.segment_thin.any():
            counts = counts.thinned(asked.segment_thin, LONG_QUERY_SHARE)
        asked.segment_counts = (key, counts)
    return asked.segment_counts[1]


def _owner(idx: np.ndarray, offset: int) -> np.ndarray:
    return np.where(idx >= 0, idx + offset, -1)


def candidates(source: str, hits: PieceHits, n_queries: int, n: int) -> list[list[Candidate]]:
    """Per query, its records from one source: dense hits as they rank, windows and k-mer segments by vote."""
    out = []
    for q in range(n_queries):
        sel = hits.rows == q
        if source == "dense":
            row = np.flatnonzero(sel)[0]
            out.append([
                Candidate(int(o), float(s), int(a), int(b))
                for o, s, a, b in zip(hits.owner[row], hits.score[row], hits.start[row], hits.end[row]) if o >= 0
            ])  # fmt: skip
        else:
            out.append(vote(hits.owner[sel], hits.score[sel], hits.start[sel], hits.end[sel], n))
    return out


def vote(hit_owner: np.ndarray, hit_score: np.ndarray, hit_start: np.ndarray, hit_end: np.ndarray, n: int):
    """Seed-and-vote for one query: rows are the query's pieces, columns their nearest subject pieces.

    A record's score is the sum over query pieces of its best piece's score; its region spans the pieces
    that gave those best scores. Returns the top n Candidates, each piece's own best n / pieces records among
    them first, taken rank by rank across the pieces (every piece's best, then every piece's second, ...), within
    a rank by the score a record had in that piece: so every part of a long query holding several records has
    candidates of its own near the top, where the many near relatives of one part would otherwise take every
    place, and a piece that matches nothing (its best a chance record, a small score summed over thousands of
    pieces of a genome-sized query) comes after the pieces that match (a one-piece query: the plain ranking)."""
    owner = np.asarray(hit_owner, dtype=np.int64)
    if owner.ndim != 2 or not owner.size:
        return []
    cols = owner.shape[1]
    per_piece = max(1, n // owner.shape[0])
    # Each piece's distinct records, first occurrence (its best) only, in scan order (piece by piece, best first).
    at = np.flatnonzero(owner.ravel() >= 0)
    o = owner.ravel()[at]
    if not o.size:
        return []
    piece = at // cols
    by = np.argsort(piece * (int(o.max()) + 1) + o, kind="stable")
    twice = np.zeros(o.size, dtype=bool)
    twice[by[1:]] = (piece[by[1:]] == piece[by[:-1]]) & (o[by[1:]] == o[by[:-1]])
    at, o, piece = at[~twice], o[~twice], piece[~twice]
    score = np.asarray(hit_score).ravel()[at].astype(np.float64)
    start, end = np.asarray(hit_start).ravel()[at], np.asarray(hit_end).ravel()[at]
    rank = np.arange(o.size) - np.searchsorted(piece, piece) + 1  # among its piece's distinct records, from 1
    # Per record (numbered in order of first appearance): its summed score and the span of those pieces.
    srt = np.argsort(o, kind="stable")
    new = np.r_[True, o[srt][1:] != o[srt][:-1]]
    heads = np.flatnonzero(new)
    seen_at = srt[heads]  # each record's first appearance in scan order
    record = np.empty(o.size, np.int64)
    record[srt] = np.cumsum(new) - 1
    summed = np.bincount(record, weights=score, minlength=heads.size)  # in scan order, as a running sum adds
    lo, hi = np.minimum.reduceat(start[srt], heads), np.maximum.reduceat(end[srt], heads)
    # A piece's own best records: each by its best (rank, score) among the pieces it heads, ties by first heading.
    mine = np.flatnonzero(rank <= per_piece)
    pick = mine[np.lexsort((mine, -score[mine], rank[mine], record[mine]))]
    best = pick[np.r_[True, record[pick][1:] != record[pick][:-1]]]  # each heading record's best entry
    led = record[best]
    heading = np.zeros(heads.size, dtype=bool)
    heading[led] = True
    first_heading = np.full(heads.size, o.size)
    np.minimum.at(first_heading, record[mine], mine)
    first = led[np.lexsort((first_heading[led], -score[best], rank[best]))][:n]
    others = np.flatnonzero(~heading)
    rest = others[np.lexsort((seen_at[others], -summed[others]))][: n - first.size]
    chosen = np.concatenate([first, rest])
    return [Candidate(int(o[seen_at[g]]), float(summed[g]), int(lo[g]), int(hi[g])) for g in chosen.tolist()]


def fuse(lists: Sequence[list[Candidate]], rrf_k: int) -> list[Candidate]:
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
