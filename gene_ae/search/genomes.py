"""Genome against genomes: average nucleotide identity (ANI) and aligned fractions (AF), what skani and fastANI
report, summed from the regions a search aligns.

Why from the search's regions: a long query is already answered region by region (regions.py), and every region
reported is traced into an alignment (align.trace: runs of exact matches between chained 13-mers, the gaps
between them aligned by edlib). Summing those alignments per subject is an alignment-based ANI with no second
aligner and no second pass over the collection.

- The query genome is a sequence of records (a FASTA file's contigs), searched a contig a thread, so memory
  holds the index, the genome's bases and, for each thread, one contig's regions.
- A subject genome is one index record, or, with `subject_feature`, the records sharing that feature's value (an
  assembly's contigs, declared at embed with --feature-column).
- ANI = matching columns / alignment columns (mismatches and gap columns count, as BLAST's pident, but for
  indels of over LONG_GAP bases) over the regions of the subject genome, each query base counted once: where
  regions overlap on the query (a part of the query found twice in the subject genome), the better one (by
  score) keeps the overlap.
- Query AF = query bases aligned (each once) / genome length; subject AF = subject bases any region aligns /
  subject genome length.
- Subjects are ranked by ANI (skani's order), ties by query AF; a subject is reported when either AF reaches
  `min_af` (skani's --min-af: a 100 % region shared by chance or by one gene is not a relative).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gene_ae.core.threads import in_threads
from gene_ae.index.collection import Collection
from gene_ae.search.hits import Hit
from gene_ae.search.stats import DEL, INS, MATCH, Region

Span = tuple[int, int]  # 0-based, end exclusive
# An indel of more than this many bases inside a traced region is sequence one genome has and the other lacks, not
# alignment columns of ANI (BLAST ends an alignment there; minimap2's alignments hold them, and check-real leaves
# them out; skani and fastANI read identity over what aligns): counted as gap columns, the 1-2 kb indels between
# real mpox clades took 0.15-1.04 points off each pair's ANI against minimap2's alignment
# (benchmarks/genome_ani.py check-real). Short indels stay columns (BLAST's pident). The AFs still count the
# region's whole span.
LONG_GAP = 50


@dataclass(frozen=True)
class GenomeConfig:
    top: int = 10  # subjects reported, best first
    min_af: float = 0.15  # report a subject when its query or subject AF reaches this (skani's default, 15 %)
    subject_feature: str | None = None  # records sharing this feature's value are one subject genome


@dataclass(frozen=True)
class GenomeMatch:
    """One subject genome against the query genome (a row of `gene-ae search --outfmt ani`)."""

    query: str
    subject: str
    ani: float  # matching columns / alignment columns over the regions counted, in [0, 1]
    query_af: float  # query bases aligned / query genome length
    subject_af: float  # subject bases aligned / subject genome length
    aligned_bases: int  # query bases aligned, each counted once
    regions: int  # aligned regions


@dataclass
class _Tally:
    """One subject genome's sums so far."""

    matches: int = 0
    columns: int = 0
    query_bases: int = 0
    regions: int = 0
    subject_spans: dict[int, list[Span]] = field(default_factory=dict)  # record -> its aligned spans

    def add(self, matches: int, columns: int, query_bases: int, regions: int, spans: dict[int, list[Span]]) -> None:
        """Sums of more regions (a group's, or another contig's tally) added to these."""
        self.matches, self.columns = self.matches + matches, self.columns + columns
        self.query_bases, self.regions = self.query_bases + query_bases, self.regions + regions
        for record, more in spans.items():
            self.subject_spans.setdefault(record, []).extend(more)


@dataclass(frozen=True)
class Subjects:
    """What a subject genome is: each record's genome name, and each genome's length in bases."""

    names: list[str]  # record position -> subject genome name
    lengths: dict[str, int]

    @classmethod
    def of(cls, collection: Collection, feature: str | None = None, allowed: np.ndarray | None = None) -> Subjects:
        """Records as genomes: each record its own (named by its id), or the records sharing `feature`'s value
        (named by it; a record without a value is its own). Lengths count the records search may return."""
        entries = collection.entries
        names = list(entries.ids)
        if feature is not None:
            columns = collection.features()
            if feature not in columns.kinds:
                known = ", ".join(sorted(columns.kinds)) or "none: build the index with --feature-column"
                raise ValueError(f"subject genomes by feature {feature!r}: this index has no such feature ({known})")
            for j in range(len(names)):
                value = columns.value(feature, j)
                names[j] = names[j] if value is None else str(value)
        lengths: dict[str, int] = {}
        usable = collection.allowed(allowed)
        for j, name in enumerate(names):
            if usable is None or usable[j]:
                lengths[name] = lengths.get(name, 0) + int(entries.length[j])
        return cls(names, lengths)


def merged(spans: Iterable[Span]) -> list[Span]:
    """Spans as sorted, disjoint spans covering the same bases."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b > a:
            out.append((a, b))
    return out


def covered(spans: Iterable[Span]) -> int:
    """The bases the spans cover, each once."""
    return sum(b - a for a, b in merged(spans))


def long_gap_columns(local: Region) -> np.ndarray:
    """[alignment columns] bool: the columns of indel runs over LONG_GAP bases."""
    long = ((local.run_kinds == INS) | (local.run_kinds == DEL)) & (local.run_lengths > LONG_GAP)
    return np.repeat(long, local.run_lengths)


def fresh(local: Region, strand: str, taken: list[Span]) -> tuple[int, int, int]:
    """(matches, alignment columns, query bases) of a traced region's columns whose query base lies in none of
    `taken` (sorted, disjoint query spans; a deletion column goes with the query base after it), the columns of
    indels over LONG_GAP bases not counted. The region's spans are on the query as given; its path runs along
    the query's reverse complement on the minus strand."""
    span = local.query_end - local.query_start
    if not taken or all(b <= local.query_start or a >= local.query_end for a, b in taken):
        return local.matches, local.length - int(np.count_nonzero(long_gap_columns(local))), span
    kinds = np.repeat(local.run_kinds, local.run_lengths)
    uses_query = kinds != DEL
    offset = np.minimum(np.cumsum(uses_query) - uses_query, max(span - 1, 0))  # along the path's query
    position = local.query_start + offset if strand == "+" else local.query_end - 1 - offset
    starts, ends = (np.array(x, dtype=np.int64) for x in zip(*taken))
    at = np.searchsorted(starts, position, side="right") - 1
    keep = ~((at >= 0) & (position < ends[np.maximum(at, 0)]))
    return (
        int(np.count_nonzero(keep & (kinds == MATCH))),
        int(np.count_nonzero(keep & ~long_gap_columns(local))),
        int(np.count_nonzero(keep & uses_query)),
    )


def add_contig(tallies: dict[str, _Tally], hits: Iterable[Hit], subjects: Subjects) -> None:
    """Sum one query contig's traced hits (one subject record after another, as engine.each_region yields them)
    into their subject genomes' tallies: each run of hits of one subject genome best region first, each query
    base once per subject genome. Holds one subject genome's regions at a time."""
    taken: dict[str, list[Span]] = {}
    group: list[Hit] = []
    for h in hits:
        if h.local is None:
            continue
        if group and subjects.names[h.subject] != subjects.names[group[0].subject]:
            _add_group(tallies, group, subjects, taken)
            group = []
        group.append(h)
    if group:
        _add_group(tallies, group, subjects, taken)


def _add_group(tallies: dict[str, _Tally], hits: list[Hit], subjects: Subjects, taken: dict[str, list[Span]]) -> None:
    for h in sorted(hits, key=lambda h: -h.local.score):
        local, name = h.local, subjects.names[h.subject]
        matches, columns, bases = fresh(local, h.strand, taken.get(name, []))
        tallies.setdefault(name, _Tally()).add(
            matches, columns, bases, 1, {h.subject: [(local.subject_start, local.subject_end)]}
        )
        taken[name] = merged([*taken.get(name, []), (local.query_start, local.query_end)])


def ranked(
    query: str, tallies: dict[str, _Tally], genome_length: int, subjects: Subjects, cfg: GenomeConfig
) -> list[GenomeMatch]:
    """The tallies as rows: those with either AF at least cfg.min_af, by ANI then query AF, the first cfg.top."""
    rows = []
    for name, t in tallies.items():
        subject_bases = sum(covered(spans) for spans in t.subject_spans.values())
        row = GenomeMatch(query, name, t.matches / max(t.columns, 1), t.query_bases / max(genome_length, 1),
                          subject_bases / max(subjects.lengths.get(name, 0), 1), t.query_bases, t.regions)  # fmt: skip
        if max(row.query_af, row.subject_af) >= cfg.min_af:
            rows.append(row)
    rows.sort(key=lambda r: (-r.ani, -r.query_af, r.subject))
    return rows[: cfg.top]


def compare(
    query: str,
    contig_lengths: Sequence[int],
    regions: Callable[[int], Iterable[Hit]],
    subjects: Subjects,
    cfg: GenomeConfig,
    threads: int = 1,
) -> list[GenomeMatch]:
    """The subject genomes the genome `query` (contigs of these lengths) shares the most with, ranked
    (`ranked`). `regions(i)` answers contig i with every traced region of its candidates, one subject record
    after another (engine.each_region); `threads` contigs are answered at once, each into its own tallies, which
    are summed in contig order (the same sums and spans as one contig after another)."""

    def contig(i: int) -> dict[str, _Tally]:
        own: dict[str, _Tally] = {}
        add_contig(own, regions(i), subjects)
        return own

    tallies: dict[str, _Tally] = {}
    for own in in_threads(contig, range(len(contig_lengths)), threads):
        for name, t in own.items():
            tallies.setdefault(name, _Tally()).add(t.matches, t.columns, t.query_bases, t.regions, t.subject_spans)
    return ranked(query, tallies, int(sum(contig_lengths)), subjects, cfg)
