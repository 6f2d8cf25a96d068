"""How deep a query's candidates are aligned or chained: the deep search of a remote gene query, and how many
candidates a long query chains. Why apart from engine.py: each rule was chosen on the val split on its own, with
its own figures, and reads only the ranked candidates and the search settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gene_ae.search.chain import ChainConfig, QueryChains
from gene_ae.search.hits import Hit, Subject

if TYPE_CHECKING:
    from gene_ae.search.candidates import QueryPieces
    from gene_ae.search.engine import SearchConfig

# A query whose best aligned candidate is below DEEP_BELOW identity is remote from everything aligned so far: its
# source often ranks lower by k-mers (on the val split at 30 %, the source was in the k-mer top 40 for 72 % of
# queries, top 300 for 92 %), so DEEP candidates are aligned instead. Queries with a close hit pay nothing. 0.8, not
# 0.75 (stop 48): on the val split with 200 queries a divergence, recall@1 at 20 % 0.90 -> 0.93 and recall@10 0.94 ->
# 0.98, 10 and 30 % unchanged, marginal 80 -> 122 ms a query (a 20 % copy's best relative aligns at ~0.78); 0.78
# gave 0.92 (docs/BENCHMARKS.md).
DEEP, DEEP_BELOW = 300, 0.8
# ... and only when the k-mer list is flat there: its top-th candidate scores at least DEEP_FLAT of its first's, so
# more like them follow. Where it falls (a family of loci, then chance records) nothing deeper is related. Chosen on
# the same val split: 0.5 and 0.7 changed no hit's recall there (12.3 -> 11.0 s for the 250 queries at 0.7); on
# the grown 1-100 kb loci (docs/BENCHMARKS.md) the 90 queries took 20.1 -> 16.3 s at the same recall.
DEEP_FLAT = 0.7
# A remote query's best DEEP_TRACE by identity are traced and reported by their local alignment's score (blastn's
# order), not only the best k: at 30 % edit identity barely tells the source from its relatives (all ~0.7), the
# affine score does. On the val split: recall@1 at 30 % 0.70 -> 0.74 and recall@10 0.80 -> 0.90 (blastn: 0.78,
# 0.94), 11.0 -> 12.3 s for the 250 queries; 100 found no more.
DEEP_TRACE = 40
# A remote gene query's deep candidates come from its first DEEP_POOL by k-mers, ordered by their most exact
# DEEP_SEED-mers on one band of DEEP_BAND diagonals (chain.py band_counts), not by k-mer cosine: a 30 % copy keeps
# ~3 % of its 10-mers, so relatives sharing the gene's conserved k-mers outrank its source by cosine (SILVA: sources
# 998th-1,755th), while the ~6 % of 8-mers it keeps lie on its source's diagonal. Chosen on the val split
# (docs/BENCHMARKS.md).
DEEP_POOL, DEEP_SEED, DEEP_BAND = 2000, 8, 64


def pieces_of(asked: QueryPieces, q: int) -> int:
    """The pieces query q votes in (its k-mer segments, else its windows)."""
    rows = asked.segment_rows if asked.segment_rows is not None else asked.window_rows
    return 1 if rows is None else int(np.count_nonzero(rows == q))


def long_first(hits: list[Hit], top: int, n: int, pieces: int, cfg: SearchConfig) -> int:
    """The candidates a long query chains first (k-mer list alone): max(top, pieces), and on to the last voted at
    least deep_flat of the best vote, at most n. Found on real genome windows (`peer_bench.py --real-windows`, seed 0,
    docs/BENCHMARKS.md), where a SARS-CoV-2 window's source is one of hundreds of near-identical strains' windows
    with the same votes: chaining max(top, pieces) found it in the top 10 for 32 of 100 queries, all 300 for 64,
    this rule 62 (11.1 / 30.5 / 25.5 s for the 150 queries); the grown loci lost nothing (15.0 -> 19.8 s)."""
    best = max((h.score for h in hits), default=0.0)
    close = [i for i, h in enumerate(hits[:n]) if h.score >= cfg.deep_flat * best]
    return max(top, min(n, pieces), close[-1] + 1 if close else 0)


def deeper(hits: list[Hit], top: int, cfg: SearchConfig, kmers: bool) -> bool:
    """Whether a remote gene query (its best of the first `top` below deep_below identity: the caller's test)
    aligns cfg.deep candidates: more than `top` are there and, for the k-mer list alone (`kmers`: cosines, best
    first), the list is flat at `top` (its score at least deep_flat of the first's). Fused lists' RRF scores fall
    by rank alone and vector cosines may be negative: no flatness is read from them."""
    if not (cfg.deep > top and len(hits) > top):
        return False
    return not kmers or hits[top - 1].score >= cfg.deep_flat * hits[0].score


def deep_candidates(query: np.ndarray, hits: list[Hit], pool: list[Hit], top: int, cfg: SearchConfig,
                    subject: Subject) -> list[Hit]:  # fmt: skip
    """A remote gene query's candidates in the order --deep aligns them: its first `top` by k-mers (aligned first),
    then the rest of `pool` (its first deep_pool by k-mers) by their most DEEP_SEED-mers on one band of DEEP_BAND
    diagonals, best first (ties by k-mers), then the other hits. `hits` as they are where the pool is empty. A
    candidate's matches are counted over its k-mer segment widened by the query's length each side (a gene's whole
    record; a few kb of a genome, not all of it)."""
    if not pool:
        return hits
    head = hits[:top]
    taken = {h.subject for h in head}
    rest = [h for h in pool if h.subject not in taken]
    with QueryChains(query, ChainConfig(k=DEEP_SEED)) as chains:
        n = query.size
        regions = [subject(h.subject)[max(h.subject_start - n, 0) : h.subject_end + n] for h in rest]
        counts = chains.band_counts(regions, DEEP_BAND)
    picked = [rest[i] for i in np.argsort(-counts, kind="stable")[: max(cfg.deep - top, 0)]]
    taken.update(h.subject for h in picked)
    return head + picked + [h for h in hits[top:] if h.subject not in taken]
