"""Alignment statistics as BLAST reports them: the local region of an alignment path, its counts, raw score,
bit score and expect value.

The scheme is blastn's (`blastn -task blastn` defaults): match +2, mismatch -3, a gap of length L costs
5 + 2 L. Its Karlin-Altschul parameters are NCBI BLAST's for that scheme (blast_stat.c, blastn_values_2_3,
row {5, 2}): lambda 0.625, K 0.41, H 0.78, alpha 0.8, beta -2. Scores of 2/-3 are rounded down to even before
the statistics, as blast_stat.c asks. The expect value uses BLAST's effective search space: query and
collection lengths shortened by the length adjustment (BLAST_ComputeLengthAdjustment's fixed point), so an
e-value here is within a small factor of blastn's for the same alignment.

The path comes from an aligner that minimises edits (edlib); the region reported is the maximal-scoring
segment of that path under the scheme above, so ragged ends that BLAST's X-drop would not extend into are
trimmed the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scoring:
    """A nucleotide scoring scheme with its Karlin-Altschul parameters (defaults: blastn's)."""

    reward: int = 2
    penalty: int = -3
    gap_open: int = 5
    gap_extend: int = 2
    lam: float = 0.625
    k: float = 0.41
    h: float = 0.78
    alpha: float = 0.8
    beta: float = -2.0
    even_scores: bool = True  # 2/-3: an odd score is rounded down to even before the statistics


BLASTN = Scoring()
# column kinds along a path: match, mismatch, a query base against a gap (I), a subject base against a gap (D)
MATCH, MISMATCH, INS, DEL = range(4)
_KIND = {"=": MATCH, "M": MATCH, "X": MISMATCH, "I": INS, "D": DEL}
_KIND_OF = np.full(256, -1, np.int8)  # an op's byte -> its kind (-1: not an op)
for _op, _kind in _KIND.items():
    _KIND_OF[ord(_op)] = _kind
# parasail's packed CIGAR: op = value & 15 indexes "MIDNSHP=X", length = value >> 4
PARASAIL_KINDS = np.array([MATCH, INS, DEL, DEL, DEL, INS, DEL, MATCH, MISMATCH] + [MATCH] * 7, dtype=np.int8)


@dataclass
class Region:
    """One local alignment (an HSP): 0-based, end-exclusive spans on the aligned query (as aligned: the reverse
    complement for the minus strand) and on the subject, BLAST's counts and the path as an extended CIGAR."""

    query_start: int
    query_end: int
    subject_start: int
    subject_end: int
    length: int  # alignment columns
    matches: int
    mismatches: int
    gap_opens: int
    gaps: int  # gap columns
    score: int  # raw score under the scheme
    run_lengths: np.ndarray  # the path as runs: lengths and kinds (MATCH, MISMATCH, INS: a query base against a
    run_kinds: np.ndarray  # gap, DEL: a subject base against a gap)

    @property
    def pident(self) -> float:
        return 100.0 * self.matches / self.length if self.length else 0.0

    @property
    def cigar(self) -> str:
        """The path as an extended CIGAR (=, X, I, D)."""
        return "".join(f"{n}{'=XID'[k]}" for n, k in zip(self.run_lengths.tolist(), self.run_kinds.tolist()))

    @property
    def plain_cigar(self) -> str:
        """The path as SAM's and PAF's plain CIGAR: = and X runs merged into M."""
        kinds = np.where(self.run_kinds == MISMATCH, MATCH, self.run_kinds)
        starts = np.concatenate([[0], np.flatnonzero(np.diff(kinds)) + 1]) if kinds.size else np.zeros(0, np.int64)
        sums = np.add.reduceat(self.run_lengths, starts) if kinds.size else starts
        return "".join(f"{n}{'MMID'[k]}" for n, k in zip(sums.tolist(), kinds[starts].tolist()))


def runs(cigar: str) -> tuple[np.ndarray, np.ndarray]:
    """An extended CIGAR (edlib's and parasail's: =, X, I, D; M read as =) as (lengths, kinds) of its runs."""
    text = np.frombuffer(cigar.encode(), np.uint8)  # parsed in numpy: a long query's path has ~10^4 runs
    is_op = _KIND_OF[text] >= 0
    digit = (text >= ord("0")) & (text <= ord("9"))
    ends = np.flatnonzero(is_op)
    if not (is_op | digit).all() or (text.size and (not is_op[-1] or is_op[0])) or (np.diff(ends) < 2).any():
        raise ValueError(f"not an extended CIGAR: {cigar[:40]!r}")
    run = np.cumsum(is_op) - is_op  # the run each byte belongs to (its op ends it)
    power = ends[run] - 1 - np.arange(text.size)  # a digit's place: 10 ** (digits after it in its run)
    value = np.where(digit, (text.astype(np.int64) - ord("0")) * 10 ** np.clip(power, 0, 18), 0)
    lengths = np.bincount(run, value, minlength=ends.size).astype(np.int64)
    return lengths, _KIND_OF[text[ends]]


def local_region(lengths: np.ndarray, kinds: np.ndarray, scoring: Scoring = BLASTN) -> Region | None:
    """The maximal-scoring segment of a path given as runs (`runs`) under `scoring` (None when no column scores
    above 0). Within a run every column scores alike, so the best segment starts and ends on run boundaries: the
    search runs over runs (a few hundred for a gene), not columns."""
    if lengths.size == 0:
        return None
    gap = kinds >= INS
    score = np.where(kinds == MATCH, scoring.reward, scoring.penalty) * lengths
    score[gap] = -(scoring.gap_open + scoring.gap_extend * lengths[gap])
    total = np.concatenate([[0], np.cumsum(score)])
    lowest = np.minimum.accumulate(total)
    end = int(np.argmax(total - lowest))  # runs [start, end) maximise total[end] - total[start]
    best = int(total[end] - lowest[end])
    if best <= 0:
        return None
    start = int(np.flatnonzero(total[: end + 1] == lowest[end])[-1])
    before = np.bincount(kinds[:start], lengths[:start], minlength=4).astype(np.int64)
    inside = np.bincount(kinds[start:end], lengths[start:end], minlength=4).astype(np.int64)
    q_before = int(before[MATCH] + before[MISMATCH] + before[INS])
    s_before = int(before[MATCH] + before[MISMATCH] + before[DEL])
    return Region(
        query_start=q_before,
        query_end=q_before + int(inside[MATCH] + inside[MISMATCH] + inside[INS]),
        subject_start=s_before,
        subject_end=s_before + int(inside[MATCH] + inside[MISMATCH] + inside[DEL]),
        length=int(lengths[start:end].sum()),
        matches=int(inside[MATCH]),
        mismatches=int(inside[MISMATCH]),
        gap_opens=int(np.count_nonzero(gap[start:end])),
        gaps=int(inside[INS] + inside[DEL]),
        score=best,
        run_lengths=lengths[start:end],
        run_kinds=kinds[start:end],
    )


def runs_of(kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column kinds (one per alignment column) as (lengths, kinds) of runs."""
    if kinds.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int8)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(kinds)) + 1])
    return np.diff(np.concatenate([starts, [kinds.size]])).astype(np.int64), kinds[starts]


@dataclass(frozen=True)
class SearchSpace:
    """What an expect value is relative to: the collection's total bases and records (BLAST's database size)."""

    bases: int
    records: int


def length_adjustment(query_length: int, space: SearchSpace, scoring: Scoring = BLASTN) -> int:
    """BLAST's length adjustment: the largest integer l with l <= alpha / lambda * (ln K + ln((m - l)(n - N l)))
    + beta (BLAST_ComputeLengthAdjustment, found here by bisection on the same inequality)."""
    m, n, records = query_length, space.bases, max(space.records, 1)
    log_k, a = math.log(scoring.k), scoring.alpha / scoring.lam

    def fits(ell: int) -> bool:
        left = (m - ell) * (n - records * ell)
        return left > 0 and ell <= a * (log_k + math.log(left)) + scoring.beta

    lo, hi = 0, max(0, min(m - 1, n // records - 1))
    if not fits(0):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def bit_score(raw: int, scoring: Scoring = BLASTN) -> float:
    if scoring.even_scores:
        raw -= raw % 2
    return (scoring.lam * raw - math.log(scoring.k)) / math.log(2)


def evalue(raw: int, query_length: int, space: SearchSpace, scoring: Scoring = BLASTN) -> float:
    """Expected chance alignments scoring at least `raw`: K m' n' e^(-lambda S) over the effective search space."""
    if scoring.even_scores:
        raw -= raw % 2
    ell = length_adjustment(query_length, space, scoring)
    effective = max(query_length - ell, 1) * max(space.bases - max(space.records, 1) * ell, 1)
    return scoring.k * effective * math.exp(-scoring.lam * raw)
