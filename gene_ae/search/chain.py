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
from collections.abc import Sequence
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
        "chain_path_text": ((P, P, P, I64, I32, P, I64, P, I64, P, I64, P), I64),
        "chain_band_counts": ((P, P, P, I64, I64, P), I64),
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

    def band_counts(self, subjects: Sequence[np.ndarray], band: int) -> np.ndarray:
        """int32 [len(subjects)]: each subject's most exact k-mer matches with the query on one band of `band`
        adjacent diagonals of either strand (chain.c chain_band_counts): co-linear matches counted without chaining,
        to rank many candidates before any is aligned."""
        if not self._table:
            raise ValueError("this query's chain table was closed")
        if band < 1:
            raise ValueError(f"a band of {band} diagonals")
        joined = np.ascontiguousarray(np.concatenate(subjects) if subjects else np.zeros(0, np.uint8), dtype=np.uint8)
        offsets = np.zeros(len(subjects) + 1, np.int64)
        np.cumsum([x.size for x in subjects], out=offsets[1:])
        out = np.zeros(len(subjects), np.int32)
        if _lib().chain_band_counts(self._table, at(joined), at(offsets), len(subjects), band, at(out)) < 0:
            raise MemoryError(f"counting a {self.query.size:,}-base query's diagonals against {len(subjects)} "
                              "subjects ran out")  # fmt: skip
        return out

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


# A gap whose table would take edlib this many bytes is aligned by edlib: its banded loop beats chain.c's whole table
# there (the grown loci's 402 paths: gaps to 2^20 bytes in C 2.35 s, to 2^15 1.52 s, none 1.78 s; the Python walk 1.9);
# under 2^20 edlib traces one table, as chain.c does, so either gives the same path (over it, Hirschberg's splits).
EDLIB_TABLE = 1 << 15


def chain_path(
    query: np.ndarray, subject: np.ndarray, anchors: np.ndarray, k: int, ends: tuple[int, int, int, int] | None = None
) -> str:
    """The alignment a chain implies, as an extended CIGAR (=, X, I, D) from its first anchor to its last: runs
    of exact matches where anchors overlap on one diagonal, the gaps between them aligned as edlib's NW path
    (small: a 30 % copy keeps an anchor every ~100 bases), as minimap2 aligns between its anchors. `query` is on
    the chain's strand (the reverse complement for a minus chain), `anchors` its (query, subject) starts in order.
    `ends`: (query start, query end, subject start, subject end) of the chain `extended` on that strand, its first
    and last runs of matches reaching them.

    The walk is chain.c's (`chain_path_text`): in Python, with edlib called for every gap, it cost 30 % of a long
    query's search. A gap of an EDLIB_TABLE table or more (~300 bases each side) comes back marked and is aligned by
    edlib here; every path is edlib's to the byte (tests/test_chain.py)."""
    if not len(anchors):
        return ""
    q, s = np.ascontiguousarray(query, dtype=np.uint8), np.ascontiguousarray(subject, dtype=np.uint8)
    pairs = np.ascontiguousarray(anchors, dtype=np.int64)
    spans = None if ends is None else np.asarray(ends, dtype=np.int64)
    # chain.c reads the bases the anchors and ends name without knowing the sequences' lengths: checked here
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or (pairs.max(axis=0) + k > [q.size, s.size]).any():
        raise ValueError(f"chain path: anchors outside a {q.size:,}-base query and a {s.size:,}-base subject")
    if spans is not None and (spans.shape != (4,) or spans.min() < 0 or spans[1] > q.size or spans[3] > s.size):
        raise ValueError(f"chain path: ends {spans.tolist()} outside the query or the subject")
    room, gap_room, found = 16 * len(pairs) + 64, 16, np.zeros(1, np.int64)
    while True:
        text, gaps = np.empty(room, np.uint8), np.zeros((gap_room, 4), np.int64)
        length = _lib().chain_path_text(at(q), at(s), at(pairs), len(pairs), k, None if spans is None else at(spans),
                                        EDLIB_TABLE, at(text), room, at(gaps), gap_room, at(found))  # fmt: skip
        if length < 0:
            raise MemoryError(f"the path of a chain of {len(pairs):,} anchors ran out of memory")
        if length <= room and found[0] <= gap_room:
            break
        room, gap_room = max(room, int(length)), max(gap_room, int(found[0]))
    path = text[:length].tobytes().decode()
    if not found[0]:
        return path
    import edlib

    pieces = path.split("?")
    aligned = (edlib.align(q[a:b].tobytes(), s[c:d].tobytes(), mode="NW", task="path")["cigar"]
               for a, b, c, d in gaps[: found[0]].tolist())  # fmt: skip
    return pieces[0] + "".join(a + p for a, p in zip(aligned, pieces[1:]))
