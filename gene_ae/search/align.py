"""Alignment identity: the ground truth of `gene-ae eval`, and the last stage of search.

Candidates are found without aligning against the whole collection; aligning a query to its top few
candidates then orders them by what users mean by "similar", the way seed-and-extend tools confirm seeds.
`identity` (global, the first `max_bases`) is evaluation's pair measure; `align_hit` is search's: on the
strand the query's oriented k-mers choose, edlib infix of the shorter in the longer, minimap2 for long
queries; `trace` gives a reported hit its path and BLAST's statistics (gene_ae/search/stats.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gene_ae.core.kmers import kmer_codes, reverse_complement_codes
from shard_tools.alphabet import decode, reverse_complement

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
# The most a record's bases outside the match take off an identity (all of them: UNALIGNED; a share: that share of
# it): a tie-break, small enough that a query inside a longer record still scores near its identity (a 300-base
# piece of a 1.5 kb gene loses 0.04), large enough that of a gene and a longer record holding it plus flanks, the
# gene ranks first (chimp genes: a 1.2 kb gene and a 1.4 kb record holding it scored 0.893 and 0.899 without it).
UNALIGNED = 0.05
ORIENT_K = 10  # oriented k-mers that choose the strand to align on (a 30 % copy of a gene keeps ~40 of ~1500)


@dataclass
class Alignment:
    """How well a query matches a subject: identity in [0, 1] (the ranking key: matched bases of the query),
    the strand of the query that matches, and the matching spans, 0-based and end exclusive: on the subject
    (forward strand) and on the query as given. `cigar` (extended: =, X, I, D), when known, aligns the query
    span (reverse-complemented on the minus strand) to the subject span."""

    identity: float
    subject_start: int
    subject_end: int
    strand: str = "+"
    query_start: int = 0
    query_end: int = 0
    cigar: str = ""


class Placement(NamedTuple):
    """Where a query much shorter than a subject lies in it (Oriented.place): the k-mers it shares on its densest
    band of diagonals, the subject span to align (that band's diagonal to a query length on, `band` wider each side,
    within the subject), and the strand Oriented.strand gives that span, counted from the same k-mers."""

    shared: int
    start: int
    end: int
    strand: str


class Oriented:
    """A query's oriented k-mers, made once and compared with each candidate to choose the strand: a table over
    every k-mer (4^ORIENT_K bytes) marking the query's own (1) and its reverse complement's (2), so a candidate
    costs one gather of its k-mers."""

    def __init__(self, query: np.ndarray, k: int = ORIENT_K):
        codes, valid = kmer_codes(query, k, canonical=False)
        forward = codes[valid].astype(np.int64)
        self.k = k
        self._forward, self._forward_at, self._query_size = forward, np.flatnonzero(valid).astype(np.int32), query.size
        self._positions: np.ndarray | None = None  # the query positions of its k-mers on each strand (place)
        self.table = np.zeros(4**k, np.uint8)
        self.table[forward] |= 1
        self.table[reverse_complement_codes(forward, k)] |= 2

    def _marks(self, subject: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, codes, marks) of the subject's k-mers of real bases: where each starts, its code, and whether
        the query holds it (1), its reverse complement does (2), or both."""
        codes, valid = kmer_codes(subject, self.k, canonical=False)
        at = np.flatnonzero(valid)
        codes = codes[at].astype(np.int64)
        return at, codes, self.table[codes]

    def strand(self, subject: np.ndarray) -> str:
        """'-' when the subject shares more of the query's reverse complement's k-mers than of its own, else '+'."""
        return _strand(self._marks(subject)[2])

    def place(self, subject: np.ndarray, band: int) -> Placement:
        """The Placement of the query in `subject`, from one pass over the subject's k-mers: the densest
        `band`-wide band of diagonals (subject position less query position, on the query's strand) among the
        k-mers the subject shares with the query on either strand (its diagonal: the subject position of the query's
        first base, before indels move it). Placement(0, 0, len(subject), '+') when none is shared. The strand is
        strand() of the span, from the k-mers lying wholly in it (those a span's own k-mers are), not computed
        again. The query's positions are tabled on first use."""
        if self._positions is None:
            k = self.k
            self._positions = np.zeros((2, 4**k), np.int32)  # read only where the table marks a k-mer
            self._positions[0, self._forward] = self._forward_at
            # a k-mer at i of the query is its reverse complement's at (length - k - i)
            self._positions[1, reverse_complement_codes(self._forward, k)] = self._query_size - k - self._forward_at
        at, codes, marks = self._marks(subject)
        best = (0, 0)
        for strand, bit in ((0, 1), (1, 2)):
            hit = (marks & bit) != 0
            diagonals = np.sort(at[hit] - self._positions[strand, codes[hit]])
            if diagonals.size:
                within = np.searchsorted(diagonals, diagonals + band) - np.arange(diagonals.size)
                i = int(np.argmax(within))
                if within[i] > best[0]:
                    best = (int(within[i]), int(np.median(diagonals[i : i + within[i]])))
        shared, diagonal = best
        if not shared:  # no k-mer of either strand: strand() of the whole subject
            return Placement(0, 0, subject.size, "+")
        start, end = max(0, diagonal - band), min(subject.size, diagonal + self._query_size + band)
        inside = (at >= start) & (at <= end - self.k)
        return Placement(shared, start, end, _strand(marks[inside]))


def _strand(marks: np.ndarray) -> str:
    """'-' when more of these k-mers are the query's reverse complement's than its own, else '+'."""
    return "-" if np.count_nonzero(marks & 2) > np.count_nonzero(marks & 1) else "+"


def align_hit(
    query: np.ndarray,
    subject: np.ndarray,
    offset: int = 0,
    above: float = 0.0,
    oriented: Oriented | None = None,
    record_length: int | None = None,
    strand: str | None = None,
) -> Alignment | None:
    """The alignment search re-ranks by, on the strand whose oriented k-mers the subject shares most:

    - up to LONG bases: edlib infix (HW) of the shorter in the longer, scored (shorter - distance - UNALIGNED x
      the record's share of bases outside the match) / query length: a query inside a longer record (a gene in
      a locus, a piece of a gene) is judged on the part it matches, a record covering only part of the query by
      how much of the query it holds, and of two records that hold the query about as well, the one that is the
      query rather than one that also holds more comes first;
    - a query longer than LONG: minimap2 (mappy, map-ont preset, both strands), matching bases of the
      primary chains / query length: local, and fast on whole loci and genomes.
    `subject` may be a region of the record starting at `offset` (`record_length`: the record's, when the region
    is not all of it); the spans reported are in record terms. `above` > 0: None when the identity is surely not
    above it. edlib then stops at the edit distance that identity allows (a band of that width), so a subject
    that cannot beat the hits already found costs less. `oriented`: the query's Oriented, when the caller aligns
    it to many subjects. `strand`: "+" or "-", the strand `oriented` would choose for `subject`, when the caller has
    it (Oriented.place's); a query longer than LONG is mapped on both strands and does not read it.
    """
    if min(query.size, subject.size) == 0:
        return Alignment(0.0, offset, offset) if above <= 0 else None
    if query.size > LONG:
        return _mappy(query, subject, offset)
    strand = strand or (oriented or Oriented(query)).strand(subject)
    found = _infix(query if strand == "+" else reverse_complement(query), subject, offset, above)
    if found is None:
        return None
    length = record_length or subject.size
    found.identity -= UNALIGNED * (length - (found.subject_end - found.subject_start)) / max(length, query.size)
    if above > 0 and found.identity <= above:
        return None
    if strand == "-":
        found.strand = "-"
        found.query_start, found.query_end = query.size - found.query_end, query.size - found.query_start
    return found


def _bound(distance: float) -> int:
    """The largest whole edit distance strictly below `distance` (a tie with the bound is not above it)."""
    return int(np.ceil(distance - 1e-9)) - 1


def _infix(query: np.ndarray, subject: np.ndarray, offset: int, above: float = 0.0) -> Alignment | None:
    import edlib

    inner, outer = (query, subject) if query.size <= subject.size else (subject, query)
    k = _bound(inner.size - above * query.size) if above > 0 else -1  # edlib's -1: no bound
    if above > 0 and k < 0:
        return None
    a, b = inner.tobytes(), outer.tobytes()
    found = edlib.align(a, b, mode="HW", task="distance", k=k)
    distance = found["editDistance"]
    if distance < 0:
        return None
    ident = max(0.0, inner.size - distance) / query.size
    start, end = _first_location(a, b, found["locations"], distance) if found["locations"] else (0, outer.size - 1)
    if inner is query:
        return Alignment(ident, offset + start, offset + end + 1, "+", 0, query.size)
    return Alignment(ident, offset, offset + subject.size, "+", start, end + 1)


def _first_location(inner: bytes, outer: bytes, ends: list, distance: int) -> tuple[int, int]:
    """edlib's first (start, end) of an infix alignment at this distance, from its end locations: the start as
    edlib finds it (the reversed inner aligned as a prefix into the outer read back from that end, the farthest
    best position), for the first end only. edlib's task="locations" does that for every end (often three or
    more), which cost 3x the distance itself on a 3 kb copy 30 % off; the result is the same (checked on 3,000
    random pairs)."""
    import edlib

    end = ends[0][1]
    if end is None or end < 0:  # edlib's own answer when the best alignment starts before the outer sequence
        return 0, end
    back = edlib.align(inner[::-1], outer[end::-1], mode="SHW", task="distance", k=distance)
    return end - back["locations"][-1][1], end


def _mappy(query: np.ndarray, subject: np.ndarray, offset: int) -> Alignment:
    import mappy

    aligner = mappy.Aligner(seq=decode(subject), preset="map-ont")
    hits = [h for h in aligner.map(decode(query), cs=False) if h.is_primary]
    if not hits:
        return Alignment(0.0, offset, offset)
    matched = sum(h.mlen for h in hits)
    best = max(hits, key=lambda h: h.mlen)  # its spans and path are reported; identity counts every chain
    strand = "+" if best.strand > 0 else "-"
    q = query if strand == "+" else reverse_complement(query)
    q_st = best.q_st if strand == "+" else query.size - best.q_en
    cigar = extended_cigar(q[q_st : q_st + best.q_en - best.q_st], subject[best.r_st : best.r_en], best.cigar)
    return Alignment(min(1.0, matched / query.size), offset + best.r_st, offset + best.r_en, strand, best.q_st,
                     best.q_en, cigar)  # fmt: skip


def extended_cigar(query: np.ndarray, subject: np.ndarray, ops: list) -> str:
    """minimap2's [[length, op]] CIGAR (op 0 M, 1 I, 2 D) as an extended one: each M run split into = and X."""
    from gene_ae.search.stats import DEL, INS, MATCH, MISMATCH, runs_of

    kinds, qi, si = [], 0, 0
    for n, op in ops:
        if op == 0:
            same = query[qi : qi + n] == subject[si : si + n]
            kinds.append(np.where(same, MATCH, MISMATCH).astype(np.int8))
            qi, si = qi + n, si + n
        elif op == 1:
            kinds.append(np.full(n, INS, np.int8))
            qi += n
        elif op == 2:
            kinds.append(np.full(n, DEL, np.int8))
            si += n
    if not kinds:
        return ""
    lengths, run_kinds = runs_of(np.concatenate(kinds))
    return "".join(f"{n}{'=XID'[k]}" for n, k in zip(lengths.tolist(), run_kinds.tolist()))


AFFINE_CELLS = 36_000_000  # query x subject span at most this: the path under the affine scheme (parasail)


def affine_path(query: np.ndarray, subject: np.ndarray, scoring) -> tuple[np.ndarray, np.ndarray]:
    """The best global alignment of two spans under `scoring` (affine gaps, as BLAST scores; parasail's striped
    scan, ~0.4 ms for two 1.5 kb genes) as runs (stats.runs), or edlib's unit-cost path for spans too large for
    its traceback table (more gap openings than BLAST would write: unit costs do not favour one long gap)."""
    from gene_ae.search.stats import PARASAIL_KINDS, runs

    if query.size * subject.size > AFFINE_CELLS:
        mapped = _mapped_path(query, subject)
        if mapped:
            return runs(mapped)
        import edlib

        return runs(edlib.align(query.tobytes(), subject.tobytes(), mode="NW", task="path")["cigar"] or "")
    from gene_ae.search.affine import nw_path

    wide = 2 * scoring.reward * min(query.size, subject.size) > 32_000  # past 16-bit scores
    packed = nw_path(decode(query).encode(), decode(subject).encode(), scoring.gap_open + scoring.gap_extend,
                     scoring.gap_extend, scoring.reward, scoring.penalty, wide)  # fmt: skip
    return (packed >> 4).astype(np.int64), PARASAIL_KINDS[packed & 15]


def _mapped_path(query: np.ndarray, subject: np.ndarray) -> str:
    """minimap2's path of the query span on the subject span (both forward), as a global extended CIGAR over
    both: the mapped part, with the bases before and after it as insertions and deletions (the local segment
    trims them). "" when minimap2 maps no part on the forward strand. Regions too large for parasail's table
    (a chained hit of a long query) are aligned this way: ksw2 between minimap2's own anchors."""
    import mappy

    hits = [h for h in mappy.Aligner(seq=decode(subject), preset="asm20").map(decode(query), cs=False)
            if h.is_primary and h.strand > 0]  # fmt: skip
    if not hits:
        return ""
    best = max(hits, key=lambda h: h.mlen)
    core = extended_cigar(query[best.q_st : best.q_en], subject[best.r_st : best.r_en], best.cigar)
    flanks = [(best.q_st, "I"), (best.r_st, "D")], [(query.size - best.q_en, "I"), (subject.size - best.r_en, "D")]
    lead, tail = ("".join(f"{n}{op}" for n, op in side if n) for side in flanks)
    return lead + core + tail


def trace(query: np.ndarray, subject: np.ndarray, found: Alignment, scoring=None):
    """The local alignment (stats.Region) behind a hit: the path over the hit's spans (parasail, global over both
    spans, or the mapper's own), trimmed to its maximal-scoring segment under blastn's scheme, with spans in
    record terms and on the query as given (on the minus strand the path aligns the query's reverse complement).
    `subject` is the whole record. None when no segment scores above 0."""
    from dataclasses import replace

    from gene_ae.search.stats import BLASTN, local_region, runs

    oriented = query if found.strand == "+" else reverse_complement(query)
    q_st = found.query_start if found.strand == "+" else query.size - found.query_end
    q_en = q_st + found.query_end - found.query_start
    s_st, s_en = found.subject_start, found.subject_end
    scoring = scoring or BLASTN
    if found.cigar:
        path = runs(found.cigar)
    elif q_en <= q_st or s_en <= s_st:
        return None
    else:
        path = affine_path(oriented[q_st:q_en], subject[s_st:s_en], scoring)
    region = local_region(*path, scoring)
    if region is None:
        return None
    a, b = q_st + region.query_start, q_st + region.query_end
    if found.strand == "-":
        a, b = query.size - b, query.size - a
    return replace(region, query_start=a, query_end=b, subject_start=s_st + region.subject_start,
                   subject_end=s_st + region.subject_end)  # fmt: skip
