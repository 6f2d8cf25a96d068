"""The one description of a hit's columns: every value gene-ae reports of a hit, by name, for the TSV, BLAST
tabular (its specifiers, as `-outfmt "6 qseqid sseqid ..."` names them) and the JSON of `serve --index`.

`values(...)` gives a hit's typed values (None where a value is unknown: a hit not aligned has no alignment
columns); the writers (gene_ae/cli/output.py, gene_ae/search/serve_index.py) only format them. Coordinates follow
BLAST: 1-based and inclusive, the query's always increasing, the subject's decreasing on the minus strand
(sstart > send).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gene_ae.search.stats import bit_score

if TYPE_CHECKING:
    from gene_ae.index.entries import Entry
    from gene_ae.search.engine import Hit

# BLAST's -outfmt 6 specifiers gene-ae computes, with what each is (blastn -help's wording where it fits).
BLAST_SPECIFIERS = {
    "qseqid": "query id",
    "sseqid": "subject id",
    "pident": "percent of identical matches over the alignment length",
    "length": "alignment length (columns)",
    "mismatch": "number of mismatches",
    "gapopen": "number of gap openings",
    "gaps": "total number of gap columns",
    "nident": "number of identical matches",
    "qstart": "start of alignment in query (1-based)",
    "qend": "end of alignment in query",
    "sstart": "start of alignment in subject (greater than send on the minus strand)",
    "send": "end of alignment in subject",
    "evalue": "expect value (Karlin-Altschul, blastn's scheme, the collection's size)",
    "bitscore": "bit score",
    "score": "raw score (match 2, mismatch -3, gap 5 + 2 a base)",
    "qlen": "query length",
    "slen": "subject length",
    "sstrand": "subject strand (plus or minus)",
    "qcovhsp": "query coverage of the alignment, percent",
}
BLAST6 = ("qseqid", "sseqid", "pident", "length", "mismatch", "gapopen", "qstart", "qend", "sstart", "send",
          "evalue", "bitscore")  # fmt: skip
# hits.tsv: gene-ae's own columns, then the alignment's, identity last
TSV = ("query_id", "subject_id", "rank", "similarity", "query_length", "subject_length", "subject_label",
       "subject_start", "subject_end", "score", "strand", "qstart", "qend", "sstart", "send", "pident", "length",
       "mismatch", "gapopen", "evalue", "bitscore")  # fmt: skip
IDENTITY = "identity"
ALIGNMENT = ("strand", "qstart", "qend", "sstart", "send", "pident", "length", "mismatch", "gapopen", "gaps",
             "nident", "evalue", "bitscore", "sstrand", "qcovhsp")  # fmt: skip


@dataclass(frozen=True)
class Query:
    """What the columns need of a query."""

    id: str
    length: int


def values(query: Query, hit: Hit, entry: Entry, rank: int) -> dict[str, object]:
    """Every column of one hit by name (TSV names and BLAST specifiers); alignment values None when untraced."""
    local = hit.local
    region = (hit.subject_start, hit.subject_end) if hit.subject_end > hit.subject_start else (0, entry.length)
    out: dict[str, object] = {
        "query_id": query.id, "qseqid": query.id, "subject_id": entry.id, "sseqid": entry.id, "rank": rank,
        "similarity": hit.similarity, "query_length": query.length, "qlen": query.length,
        "subject_length": entry.length, "slen": entry.length, "subject_label": entry.label or "",
        "subject_start": region[0], "subject_end": region[1], "score": float(hit.score), IDENTITY: hit.identity,
    }  # fmt: skip
    out.update(dict.fromkeys((*ALIGNMENT, "raw_score")))
    if local is None:
        return out
    plus = hit.strand == "+"
    out.update(
        strand=hit.strand, sstrand="plus" if plus else "minus", qstart=local.query_start + 1, qend=local.query_end,
        sstart=local.subject_start + 1 if plus else local.subject_end,
        send=local.subject_end if plus else local.subject_start + 1, pident=local.pident, length=local.length,
        mismatch=local.mismatches, gapopen=local.gap_opens, gaps=local.gaps, nident=local.matches,
        evalue=hit.evalue, bitscore=bit_score(local.score), raw_score=local.score,
        qcovhsp=100.0 * (local.query_end - local.query_start) / max(query.length, 1),
    )  # fmt: skip
    return out


def blast_value(name: str, v: dict[str, object]) -> str:
    """One BLAST specifier's value written as blastn writes it (align_format_util's e-value and bit-score
    formats; `score` is the raw score)."""
    if name == "score":
        return "" if v["raw_score"] is None else str(v["raw_score"])
    x = v[name]
    if x is None:
        return ""
    if name == "evalue":
        return format_evalue(float(x))
    if name == "bitscore":
        b = float(x)
        return f"{b:.3e}" if b > 9999 else f"{b:.0f}" if b > 99.9 else f"{b:.1f}"
    if name == "pident":
        return f"{float(x):.3f}"
    if name == "qcovhsp":
        return f"{round(float(x))}"
    return str(x)


_TSV_FORMATS = {"similarity": "{:.4f}", "score": "{:.5f}", "identity": "{:.4f}", "pident": "{:.3f}"}


def tsv_text(name: str, v: dict[str, object]) -> str:
    """One hits.tsv column's text: e-value and bit score as blastn writes them, the scores rounded, "" for None."""
    if name in ("evalue", "bitscore"):
        return blast_value(name, v)
    x = v[name]
    return "" if x is None else _TSV_FORMATS[name].format(x) if name in _TSV_FORMATS else str(x)


def format_evalue(e: float) -> str:
    if e < 1e-180:
        return "0.0"
    if e < 0.0009:  # blastn: %2.0le below 1e-99, %3.0le below 0.0009; the same text
        return f"{e:.0e}"
    if e < 0.1:
        return f"{e:.3f}"
    if e < 1.0:
        return f"{e:.2f}"
    if e < 10.0:
        return f"{e:.1f}"
    return f"{e:.0f}"


def parse_blast_columns(text: str) -> tuple[str, ...]:
    """`--outfmt "6 qseqid sseqid ..."` (or "6" alone, "blast6") to its specifiers, else ValueError naming the
    first unknown one."""
    words = text.split()
    if not words or words[0] not in ("6", "blast6"):
        raise ValueError(f"{text!r}: not a tabular format (give tsv, blast6, sam, paf or '6 qseqid sseqid ...')")
    names = tuple(words[1:]) or BLAST6
    unknown = [n for n in names if n not in BLAST_SPECIFIERS and n != "std"]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r} (known: std, {', '.join(BLAST_SPECIFIERS)})")
    out: list[str] = []
    for n in names:
        out += BLAST6 if n == "std" else [n]
    return tuple(out)


def json_rows(queries: Sequence[Query], results: Sequence[list[Hit]], entries: Sequence[Entry]) -> list[dict]:
    """Each hit's TSV columns and identity as a JSON object, numbers unrounded (`serve --index`'s answer)."""
    rows = []
    for query, hits in zip(queries, results):
        for rank, hit in enumerate(hits, start=1):
            v = values(query, hit, entries[hit.subject], rank)
            rows.append({name: v[name] for name in (*TSV, IDENTITY)})
    return rows
