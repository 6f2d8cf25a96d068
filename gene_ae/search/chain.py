"""Where a long query matches a subject: co-linear chains of exact k-mer matches (chain.c), on both strands.

Why: aligning a 50 kb query to each of 40 whole candidate records cost 85 % of a long query's time, and a record
holding several parts of the query got one alignment. Chaining the matches of the query's k-mers (minimap2's
way: anchors, then dynamic programming over the last `h` anchors within a gap and a drift) finds each region a
subject shares with the query, its strand and span, in one pass over the subject; its anchors' density gives
the region's identity without aligning it (a share f of the query's k-mers kept exactly means about f^(1/k) of
its bases do), so only the hits reported are aligned, and only over their regions.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from gene_ae.core.native import F64, I32, I64, P, at, load
from shard_tools.alphabet import FIRST_BASE, reverse_complement

_ROW = 8  # strand, query start, query end, subject start, subject end, score, anchors, anchors' offset (chain.c)


@dataclass(frozen=True)
class ChainConfig:
    k: int = 13  # exact match length: 13-mers keep 1 % of positions of a 30 % copy, and recur by chance once in 67 Mb
    max_occ: int = 64  # query k-mers occurring more often are repeats, left out
    max_gap: int = 5000  # the largest gap between chained anchors, on either sequence
    band: int = 500  # the largest drift off the diagonal between two chained anchors (indels)
    lookback: int = 50  # anchors before each that the chaining considers
    min_score: float = 40.0  # a chain scores matched bases less gap costs; weaker ones are chance
    max_chains: int = 64  # chains kept per subject


@dataclass(frozen=True)
class Chain:
    """A region the query shares with a subject: spans 0-based, end exclusive, the query's as given, the
    subject's on its forward strand; `anchors`: the exact k-mer matches chained."""

    strand: str
    query_start: int
    query_end: int
    subject_start: int
    subject_end: int
    score: int
    anchors: int

    def on_strand(self, n: int) -> tuple[int, int]:
        """The query span on the chain's strand (of an n-base query): on its reverse complement for minus."""
        return (self.query_start, self.query_end) if self.strand == "+" else (n - self.query_end, n - self.query_start)

    def identity(self, k: int) -> float:
        """The identity the anchors' density implies: a base-level identity p keeps a k-mer with chance p^k."""
        kept = self.anchors / max(1, self.query_end - self.query_start - k + 1)
        return float(min(1.0, kept) ** (1.0 / k))


@cache
def _lib() -> ctypes.CDLL:
    return load("gene_ae.search._chain", "gene_ae/search/chain.c", {
        "chain_table_new": ((P, I64, I32, I32, I32), P),
        "chain_table_free": ((P,), None),
        "chain_regions": ((P, P, I64, I64, I64, I32, F64, P, I64, P, I64), I64),
    })  # fmt: skip


class QueryChains:
    """A query's k-mer table (made once, in C memory; `close` frees it), chained against one subject at a time."""

    def __init__(self, query: np.ndarray, cfg: ChainConfig | None = None):
        self._table, self._reverse = None, None
        self.cfg = cfg or ChainConfig()
        if not 1 <= self.cfg.k <= 15:  # a table entry is code << 33 | position << 1 | orientation
            raise ValueError(f"chain k must be in 1..15, got {self.cfg.k}")
        if query.size >= 2**31 or not 1 <= self.cfg.max_occ <= 255:
            raise ValueError(f"a query of {query.size:,} bases (at most 2^31 - 1) with max_occ {self.cfg.max_occ} "
                             "(1..255) cannot be chained")  # fmt: skip
        self.query = np.ascontiguousarray(query, dtype=np.uint8)
        c = self.cfg
        self._table = _lib().chain_table_new(at(self.query), self.query.size, c.k, FIRST_BASE, c.max_occ)

    def oriented(self, strand: str) -> np.ndarray:
        """The query on this strand (its reverse complement made once)."""
        if strand == "+":
            return self.query
        if self._reverse is None:
            self._reverse = reverse_complement(self.query)
        return self._reverse

    def regions(self, subject: np.ndarray) -> list[Chain]:
        """The chains of the query against `subject`, best first."""
        return [ch for ch, _ in self._chains(subject, anchors=False)]

    def anchored(self, subject: np.ndarray) -> list[tuple[Chain, np.ndarray]]:
        """regions() with each chain's anchors: [n, 2] (query, subject) starts of its exact k-mer matches in
        order, the query's on the strand's query (its reverse complement for a minus chain)."""
        return self._chains(subject, anchors=True)

    def _chains(self, subject: np.ndarray, anchors: bool) -> list[tuple[Chain, np.ndarray]]:
        if not self._table:
            raise ValueError("this query's chain table was closed")
        c, s = self.cfg, np.ascontiguousarray(subject, dtype=np.uint8)
        out = np.zeros((c.max_chains, _ROW), np.int64)
        pairs = np.zeros((0, 2), np.int64)
        for _ in range(2 if anchors else 1):  # with anchors: once to count them, once to fill them
            rows = _lib().chain_regions(self._table, at(s), s.size, c.max_gap, c.band, c.lookback, c.min_score,
                                        at(out), c.max_chains, at(pairs) if anchors else None, len(pairs))  # fmt: skip
            if rows < 0:
                raise MemoryError(f"chaining a {self.query.size:,}-base query to a {s.size:,}-base subject ran out")
            if anchors and not len(pairs):
                pairs = np.zeros((max(1, int(out[:rows, 6].sum())), 2), np.int64)
        n = self.query.size
        chains = []
        for strand, qa, qb, sa, sb, score, count, offset in out[:rows].tolist():
            if strand:  # minus: the query span is on its reverse complement
                qa, qb = n - qb, n - qa
            chain = Chain("-" if strand else "+", qa, qb, sa, sb, score, count)
            chains.append((chain, pairs[offset : offset + count] if anchors and offset >= 0 else pairs[:0]))
        return sorted(chains, key=lambda x: -x[0].score)

    def close(self) -> None:
        if self._table:
            _lib().chain_table_free(self._table)
            self._table = None

    def __enter__(self) -> QueryChains:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


OVERLAP = 0.5  # a span lying more than this share inside a better one's is that region again


def inside(start: int, end: int, spans: list[tuple[int, int]]) -> float:
    """The largest share of the span [start, end) that one of `spans` covers."""
    length = max(end - start, 1)
    return max((max(0, min(b, end) - max(a, start)) / length for a, b in spans), default=0.0)


def best_regions(chains: list[Chain], query_length: int, k: int) -> list[tuple[float, Chain]]:
    """(score, chain) of a subject's chains that are regions of their own, best first: a chain whose query span
    lies mostly (OVERLAP) inside a better chain's is that region again (a repeat, a paralogue), left out. The
    score, what long queries rank by: the bases the region matches (identity x query span) over the query's
    length, as a mapper ranks by matched bases."""
    kept: list[tuple[float, Chain]] = []
    spans: list[tuple[int, int]] = []
    for ch in chains:
        if inside(ch.query_start, ch.query_end, spans) <= OVERLAP:
            kept.append((ch.identity(k) * (ch.query_end - ch.query_start) / max(query_length, 1), ch))
            spans.append((ch.query_start, ch.query_end))
    return sorted(kept, key=lambda x: -x[0])


def extended(chain: Chain, query: np.ndarray, subject: np.ndarray) -> Chain:
    """The chain with its ends moved out over the exact matches that continue them (a chain starts at its first
    k-mer match: a record inside a long query would be reported from a few bases in where a base next to its
    start happens to differ from the query's k-mers' neighbours). `query` on the chain's strand."""
    qa, qb = chain.on_strand(query.size)
    sa, sb = chain.subject_start, chain.subject_end
    left = _same_run(query[:qa][::-1], subject[:sa][::-1])
    right = _same_run(query[qb:], subject[sb:])
    moved = Chain(chain.strand, qa - left, qb + right, sa - left, sb + right, chain.score, chain.anchors)
    # the span moved on the chain's strand, back on the query as given (on_strand maps either way)
    return Chain(chain.strand, *moved.on_strand(query.size), sa - left, sb + right, chain.score, chain.anchors)


def _same_run(a: np.ndarray, b: np.ndarray) -> int:
    """How many first elements of a and b are equal (bases: N matches nothing). Compared in growing blocks: a
    chain inside a genome would otherwise compare the megabases before it to find a difference a few bases in."""
    m, start, step = min(a.size, b.size), 0, 64
    while start < m:
        end = min(m, start + step)
        differ = np.flatnonzero((a[start:end] != b[start:end]) | (a[start:end] >= FIRST_BASE + 4))
        if differ.size:
            return start + int(differ[0])
        start, step = end, step * 4
    return m


def chain_path(
    query: np.ndarray, subject: np.ndarray, anchors: np.ndarray, k: int, ends: tuple[int, int, int, int] | None = None
) -> str:
    """The alignment a chain implies, as an extended CIGAR (=, X, I, D) from its first anchor to its last: runs
    of exact matches where anchors overlap on one diagonal, the gaps between them aligned by edlib (small: a 30 %
    copy keeps an anchor every ~100 bases), as minimap2 aligns between its anchors. `query` is on the chain's
    strand (the reverse complement for a minus chain), `anchors` its (query, subject) starts in order. `ends`:
    (query start, query end, subject start, subject end) of the chain `extended` on that strand, its first and
    last runs of matches reaching them."""
    import edlib

    if not len(anchors):
        return ""
    qs_all, ss_all = anchors[:, 0], anchors[:, 1]
    diagonal = qs_all - ss_all
    # groups of anchors each on the diagonal of the one before and overlapping it (q <= previous q + k): the walk
    # anchor by anchor either extends a run with every member of a group after its first taken one, or skips them
    cut = np.flatnonzero((diagonal[1:] != diagonal[:-1]) | (qs_all[1:] > qs_all[:-1] + k)) + 1
    firsts, lasts = np.concatenate(([0], cut)), np.concatenate((cut, [len(anchors)])) - 1
    parts: list[str] = []
    qs = qe = se = -1  # the current run of matches: query start, query and subject ends (qe < 0: none yet)
    for first, last, d, q, q_last in _groups(firsts, lasts, diagonal[firsts], qs_all[firsts], qs_all[lasts]):
        if qe < 0:
            qs, qe, se = q, q_last + k, q_last + k - d
            if ends is not None and ends[0] - ends[2] == d:
                qs = min(qs, ends[0])
            continue
        if d == qe - se and q <= qe:  # the same diagonal, overlapping: the run goes on
            qe, se = q_last + k, q_last + k - d
            continue
        if q < qe or q - d < se:  # its first anchors cross the run (an indel right at it): skip those
            j = first + int(np.searchsorted(qs_all[first : last + 1], max(qe, se + d)))
            if j > last:
                continue
            q = int(qs_all[j])
        parts.append(f"{qe - qs}=")
        qg, sg = query[qe:q], subject[se : q - d]
        if qg.size and sg.size:
            parts.append(edlib.align(qg.tobytes(), sg.tobytes(), mode="NW", task="path")["cigar"])
        elif qg.size or sg.size:
            parts.append(f"{qg.size}I" if qg.size else f"{sg.size}D")
        qs, qe, se = q, q_last + k, q_last + k - d
    if ends is not None and ends[1] - ends[3] == qe - se:
        qe = max(qe, ends[1])
    parts.append(f"{qe - qs}=")
    return "".join(parts)


def _groups(*columns: np.ndarray, block: int = 1 << 16) -> Iterator[tuple[int, ...]]:
    """Rows of the columns as Python ints, a block at a time: a genome's ~10^6 anchors as lists took ~300 MB."""
    for start in range(0, len(columns[0]), block):
        yield from zip(*(c[start : start + block].tolist() for c in columns))
