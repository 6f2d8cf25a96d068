"""What gene-ae writes for people and pipelines: hits as TSV or BLAST tabular, reconstructions as TSV.

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
from shard_tools.files import atomic_write_bytes
from shard_tools.text import control_char, printable

if TYPE_CHECKING:
    from gene_ae.core.features import FeatureColumns
    from gene_ae.core.records import InputRecord
    from gene_ae.index.directory import Entry
    from gene_ae.search.engine import Hit

OUTFMTS = ("tsv", "blast6")
HIT_COLUMNS = ("query_id", "subject_id", "rank", "similarity", "query_length", "subject_length", "subject_label")
REGION_COLUMNS = ("subject_start", "subject_end", "score")
BLAST6_COLUMNS = (
    "qseqid", "sseqid", "pident", "length", "mismatch", "gapopen", "qstart", "qend", "sstart", "send", "evalue",
    "bitscore",
)  # fmt: skip
# What BLAST computes and gene-ae does not: written as these constants (README, "Search output").
NOT_COMPUTED = {"mismatch": 0, "gapopen": 0, "evalue": "0", "bitscore": "0"}


def row(fields: Sequence[object]) -> str:
    """One tab-separated line; text with a tab, newline or other control character is refused."""
    for value in fields:
        if isinstance(value, str) and (bad := control_char(value)) is not None:
            raise ValueError(f"{printable(value)!r}: control character {bad!r} would break a TSV row; refused")
    return "\t".join(map(str, fields)) + "\n"


def region(hit: Hit, entry: Entry) -> tuple[int, int]:
    """The subject region a hit reports (0-based, end exclusive): the located one, else the whole record.
    TSV and BLAST tabular both write this one region (BLAST as 1-based inclusive)."""
    if hit.subject_end > hit.subject_start:
        return hit.subject_start, hit.subject_end
    return 0, entry.length


def hits_tsv(
    queries: Sequence[InputRecord],
    results: Sequence[list[Hit]],
    entries: Sequence[Entry],
    identity: bool,
    features: tuple[Sequence[str], FeatureColumns] | None = None,
) -> Iterator[str]:
    """gene-ae's own columns, with a header; `identity` adds the alignment identity of re-ranked hits,
    `features` (names, columns) a column per named feature of the subject (empty when missing)."""
    names, columns = features or ((), None)
    own = HIT_COLUMNS + REGION_COLUMNS + (("identity",) if identity else ())
    yield row(own + tuple(f"feature.{n}" if n in own else n for n in names))  # a feature named `score` stays apart
    for query, hits in zip(queries, results):
        for rank, hit in enumerate(hits, start=1):
            e = entries[hit.subject]
            sim = f"{hit.similarity:.4f}" if hit.similarity is not None else ""
            fields = [query.id, e.id, rank, sim, query.tokens.size, e.length, e.label or ""]
            fields += [*region(hit, e), f"{hit.score:.5f}"]
            fields += [f"{hit.identity:.4f}" if hit.identity is not None else ""] if identity else []
            fields += [columns.text(name, hit.subject) for name in names]
            yield row(fields)


def hits_blast6(
    queries: Sequence[InputRecord], results: Sequence[list[Hit]], entries: Sequence[Entry]
) -> Iterator[str]:
    """BLAST's `-outfmt 6` columns, no header, best hit first per query, coordinates 1-based inclusive.

    pident is the alignment identity x 100 for re-ranked hits, else the cosine x 100 (0 when only the k-mer or
    window lists found the record); length is the subject region's; the query is reported whole.
    """
    for query, hits in zip(queries, results):
        for hit in hits:
            e = entries[hit.subject]
            if hit.identity is not None:
                pident = 100 * hit.identity
            else:
                pident = 100 * max(hit.similarity or 0.0, 0.0)
            start, end = region(hit, e)
            n = NOT_COMPUTED
            yield row(
                [query.id, e.id, f"{pident:.3f}", end - start, n["mismatch"], n["gapopen"], 1, query.tokens.size]
                + [start + 1, end, n["evalue"], n["bitscore"]]
            )


def emit(lines: Iterable[str], out: str | Path | None) -> None:
    """All lines to `out` (replaced atomically) or stdout, once every line is formatted."""
    text = "".join(lines)
    check_out_file(out)
    if out:
        atomic_write_bytes(out, text.encode())
    else:
        sys.stdout.write(text)
