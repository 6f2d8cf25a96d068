"""What gene-ae writes for people and pipelines: hits as TSV or BLAST tabular, genomes' ANI, reconstructions as TSV.

Every row goes through `row()`, which refuses text holding control characters (shard_tools.text), so an id
or a label can never shift a column or split a row (docs/INPUTS.md: refuse, not escape, as the readers do).
Output is formatted whole before anything is written, and a file is replaced atomically (shard_tools.files),
so a failed run leaves the old file or none, never half of one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gene_ae.cli.common import check_out_file
from gene_ae.search import columns
from shard_tools.files import atomic_write_bytes
from shard_tools.text import control_char, printable

if TYPE_CHECKING:
    from gene_ae.core.features import FeatureColumns
    from gene_ae.core.records import InputRecord
    from gene_ae.index.directory import Entry
    from gene_ae.search.engine import Hit
    from gene_ae.search.genomes import GenomeMatch

OUTFMTS = ("tsv", "blast6", "sam", "paf", "ani")  # and "6 qseqid sseqid ...": BLAST's columns by name


def row(fields: Sequence[object]) -> str:
    """One tab-separated line; text with a tab, newline or other control character is refused."""
    for value in fields:
        if isinstance(value, str) and (bad := control_char(value)) is not None:
            raise ValueError(f"{printable(value)!r}: control character {bad!r} would break a TSV row; refused")
    return "\t".join(map(str, fields)) + "\n"


def _query(q: InputRecord) -> columns.Query:
    return columns.Query(q.id, int(q.tokens.size))


def hits_tsv(
    queries: Sequence[InputRecord],
    results: Sequence[list[Hit]],
    entries: Sequence[Entry],
    identity: bool,
    features: tuple[Sequence[str], FeatureColumns] | None = None,
) -> Iterator[str]:
    """gene-ae's columns (gene_ae/search/columns.py TSV), with a header; the alignment columns are empty for a
    hit not aligned; `identity` adds the alignment identity of re-ranked hits, `features` (names, columns) a
    column per named feature of the subject (empty when missing)."""
    names, cols = features or ((), None)
    own = columns.TSV + ((columns.IDENTITY,) if identity else ())
    yield row(own + tuple(f"feature.{n}" if n in own else n for n in names))  # a feature named `score` stays apart
    for query, hits in zip(queries, results):
        for rank, hit in enumerate(hits, start=1):
            v = columns.values(_query(query), hit, entries[hit.subject], rank)
            fields = [columns.tsv_text(n, v) for n in own] + [cols.text(name, hit.subject) for name in names]
            yield row(fields)


def hits_blast(
    queries: Sequence[InputRecord], results: Sequence[list[Hit]], entries: Sequence[Entry],
    names: Sequence[str] = columns.BLAST6,
) -> Iterator[str]:  # fmt: skip
    """BLAST tabular (`-outfmt 6`, or the columns named), no header, best hit first per query: one row per
    aligned hit (a hit without a local alignment is not reported, as BLAST reports only HSPs)."""
    for query, hits in zip(queries, results):
        for rank, hit in enumerate(hits, start=1):
            if hit.local is None:
                continue
            v = columns.values(_query(query), hit, entries[hit.subject], rank)
            yield row([columns.blast_value(n, v) for n in names])


def hits_sam(queries: Sequence[InputRecord], results: Sequence[list[Hit]], entries: Sequence[Entry]) -> Iterator[str]:
    """SAM 1.6: @SQ lines for the subjects hit, then one record per aligned hit (the first of a query primary,
    the rest secondary, flag 256), the query reverse-complemented on the minus strand (flag 16), its unaligned
    ends soft-clipped, AS (raw score) and NM (edit distance) tags."""
    from shard_tools.alphabet import decode, reverse_complement

    seen: dict[int, None] = {}
    for hits in results:
        seen.update((h.subject, None) for h in hits if h.local is not None)
    yield row(["@HD", "VN:1.6", "SO:unsorted"])
    for j in seen:
        yield row(["@SQ", f"SN:{entries[j].id}", f"LN:{entries[j].length}"])
    yield row(["@PG", "ID:gene-ae", "PN:gene-ae"])
    for query, hits in zip(queries, results):
        first = True
        for hit in hits:
            local = hit.local
            if local is None:
                continue
            minus = hit.strand == "-"
            seq = reverse_complement(query.tokens) if minus else query.tokens
            left = query.tokens.size - local.query_end if minus else local.query_start
            right = query.tokens.size - left - (local.query_end - local.query_start)
            cigar = (f"{left}S" if left else "") + local.plain_cigar + (f"{right}S" if right else "")
            flag = (16 if minus else 0) | (0 if first else 256)
            nm = local.mismatches + local.gaps
            yield row([query.id, flag, entries[hit.subject].id, local.subject_start + 1, 255, cigar, "*", 0, 0,
                       decode(seq) if first else "*", "*", f"AS:i:{local.score}", f"NM:i:{nm}"])  # fmt: skip
            first = False


def hits_paf(queries: Sequence[InputRecord], results: Sequence[list[Hit]], entries: Sequence[Entry]) -> Iterator[str]:
    """minimap2's PAF: one line per aligned hit, query coordinates on the query as given, the strand, target
    coordinates forward, matches, alignment columns, mapping quality 255, NM, AS and the CIGAR (cg:Z)."""
    for query, hits in zip(queries, results):
        for rank, hit in enumerate(hits, start=1):
            local = hit.local
            if local is None:
                continue
            e = entries[hit.subject]
            yield row([query.id, query.tokens.size, local.query_start, local.query_end, hit.strand, e.id, e.length,
                       local.subject_start, local.subject_end, local.matches, local.length, 255,
                       f"tp:A:{'P' if rank == 1 else 'S'}", f"NM:i:{local.mismatches + local.gaps}",
                       f"AS:i:{local.score}", f"cg:Z:{local.plain_cigar}"])  # fmt: skip


GENOME_COLUMNS = ("query_genome", "subject_genome", "ani", "query_af", "subject_af", "aligned_bases", "regions")


def genomes_tsv(matches: Sequence[GenomeMatch]) -> Iterator[str]:
    """`--outfmt ani`: a header, then one row per subject genome, best first (gene_ae/search/genomes.py): ANI and
    the aligned fractions in percent, as skani and fastANI write them."""
    yield row(GENOME_COLUMNS)
    for m in matches:
        yield row([m.query, m.subject, f"{100 * m.ani:.3f}", f"{100 * m.query_af:.2f}", f"{100 * m.subject_af:.2f}",
                   m.aligned_bases, m.regions])  # fmt: skip


def emit(lines: Iterable[str], out: str | Path | None) -> None:
    """All lines to `out` (replaced atomically) or stdout, once every line is formatted."""
    text = "".join(lines)
    check_out_file(out)
    if out:
        atomic_write_bytes(out, text.encode())
    else:
        sys.stdout.write(text)
