"""A long query's hits: the regions it shares with its candidates (chain.py), and their paths from the anchors.

Why apart from engine.py: a long query (a locus, a genome, records laid end to end) is answered region by
region, not record by record; ranking its regions and giving each reported one a path are one idea.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache

import numpy as np

from gene_ae.search.chain import Chain, QueryChains, best_regions, chain_path, extended
from gene_ae.search.hits import Hit, Subject
from gene_ae.search.progress import Share


def chained(
    table: QueryChains, hits: list[Hit], subject: Subject, top: int, done: Callable[[float], None] | None = None,
    deep: int = 0, enough: int = 0,
) -> list[Hit]:  # fmt: skip
    """A long query's first `top` candidates as hits, one per region the query shares with each (co-linear k-mer
    matches on either strand), ranked by the bases each matches over the query's length (the `identity` long
    queries rank by); nothing aligned (the hits reported get their paths from their anchors, RegionPaths).
    Candidates sharing no chain, and hits past those chained, follow without an identity. `deep` > `top`: when
    the first `top` give fewer than `enough` regions, the candidates on to `deep` are chained too (as search's
    --deep aligns further for a remote gene). `done(f)`: the share f of the candidates chained so far (a progress
    line)."""
    n, k = table.query.size, table.cfg.k
    found: list[tuple[float, Hit]] = []
    unmatched = []
    limit, i = min(top, len(hits)), 0
    first = limit
    extensible = deep > limit and len(hits) > limit
    while i < limit:
        h = hits[i]
        tokens = subject(h.subject)
        chains = [extended(ch, table.oriented(ch.strand), tokens) for ch in table.regions(tokens)]
        regions = best_regions(chains, n, k)
        if not regions:
            unmatched.append(h)
        for score, ch in regions:
            spans = {"subject_start": ch.subject_start, "subject_end": ch.subject_end, "query_start": ch.query_start,
                     "query_end": ch.query_end}  # fmt: skip
            found.append((score, replace(h, identity=score, strand=ch.strand, **spans)))
        i += 1
        if i == first and extensible and len(found) < enough:
            limit = min(deep, len(hits))
        if done is not None:
            done(_done(i, first, limit, extensible))
    found.sort(key=lambda x: -x[0])
    return [h for _, h in found] + unmatched + hits[limit:]


def _done(i: int, first: int, limit: int, extensible: bool) -> float:
    """The share of chaining done after i candidates: where more than the `first` may follow, those are the first
    half and the rest (up to `limit`) the second, so the share never falls back when the list is extended."""
    if not extensible:
        return i / limit
    return 0.5 * i / first if limit == first else 0.5 + 0.5 * (i - first) / (limit - first)


class RegionPaths:
    """hit -> the extended CIGAR of its region, built from its chain's anchors (chain.chain_path): a 40 kb
    region's path costs a few ms where aligning it whole cost 0.1-0.2 s. "" when the chain is not found again.
    The anchors of the last KEPT subjects asked are kept (a genome against a genome has ~10^6 of them, 16 bytes
    each): hits asked one subject after another chain each subject once."""

    KEPT = 4

    def __init__(self, table: QueryChains, subject: Subject):
        self.table, self.subject = table, subject
        self._anchored: dict[int, list[tuple[Chain, np.ndarray]]] = {}

    def __call__(self, hit: Hit) -> str:
        tokens = self.subject(hit.subject)
        if hit.subject not in self._anchored:
            if len(self._anchored) >= self.KEPT:
                del self._anchored[next(iter(self._anchored))]  # the oldest
            self._anchored[hit.subject] = self.table.anchored(tokens)
        for ch, anchors in self._anchored[hit.subject]:
            query = self.table.oriented(ch.strand)
            ch = extended(ch, query, tokens)
            if (ch.strand, ch.query_start, ch.query_end, ch.subject_start, ch.subject_end) == (
                hit.strand, hit.query_start, hit.query_end, hit.subject_start, hit.subject_end
            ):  # fmt: skip
                qa, qb = ch.on_strand(query.size)
                return chain_path(query, tokens, anchors, self.table.cfg.k, (qa, qb, ch.subject_start, ch.subject_end))
        return ""


@contextmanager
def chaining(
    query: np.ndarray, hits: list[Hit], subject: Subject, top: int, share: Share, deep: int = 0, enough: int = 0
) -> Iterator[tuple[list[Hit], RegionPaths, Subject]]:
    """(the first `top` candidates chained region by region, on to `deep` when they give fewer than `enough`
    regions; their paths; the subject cached) of a long query, its chain table freed on leaving; the chaining is
    the first half of the query's share of the work."""
    cached = lru_cache(maxsize=RegionPaths.KEPT)(subject)  # each candidate decoded once, not once a step
    with QueryChains(query) as table:
        ranked = chained(table, hits, cached, top, share.within(0.0, 0.5), deep, enough)
        yield ranked, RegionPaths(table, cached), cached
