"""GenBank and EMBL through Bio.SeqIO, with line numbers in errors and the declared length checked."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from shard_tools.compression import DECOMPRESS_ERRORS
from shard_tools.record import InputError, Record, make_record
from shard_tools.text import printable

if TYPE_CHECKING:
    from shard_tools.inputs import ReaderConfig

_ASCII_SPACE = " \t\r\n\v\f"


# The length a record's first line declares: GenBank "LOCUS  NAME  5386 bp ...", EMBL "ID   X; ...; 5386 BP."
_DECLARED_LENGTH = {
    "genbank": ("LOCUS ", re.compile(r"\s(\d+) (?:bp|aa|rc)(?:\s|$)")),
    "embl": ("ID   ", re.compile(r"\s(\d+) BP\.?\s*$", re.IGNORECASE)),
}


def _length_mismatch(path: str, fmt: str, header: tuple[int, str] | None, rid: str, found: int) -> InputError | None:
    """An error when the record's LOCUS / ID line declares another length than its sequence has (a record
    cut short, or edited by hand), else None; a sequence-less record (CONTIG) is refused later anyway."""
    match = _DECLARED_LENGTH[fmt][1].search(header[1].rstrip("\n")) if header else None
    if match is None or not found:
        return None
    declared = int(match.group(1))
    if declared == found:
        return None
    first = "LOCUS" if fmt == "genbank" else "ID"
    return InputError(
        path,
        f"its {first} line declares {declared:,} bases, but its sequence has {found:,} (cut short or edited?)",
        line=header[0] if header else None,
        record=rid,
    )


class _CountingText:
    """A text stream that counts the lines read from it, so GenBank/EMBL errors can name a line, and keeps the
    first line of the record being read (LOCUS / ID), whose declared length Bio does not check (EMBL) or only
    warns about (GenBank)."""

    def __init__(self, text: IO[str], fmt: str):
        self._text, self.lines, self.blank = text, 0, True  # blank: nothing but whitespace read so far
        self._start = _DECLARED_LENGTH[fmt][0]
        self.header: tuple[int, str] | None = None  # (line number, text) of the last LOCUS / ID line

    def read(self, size: int = -1) -> str:
        return self._text.read(size)

    def readline(self, size: int = -1) -> str:
        line = self._text.readline(size)
        self.lines += line.endswith("\n")
        if line.startswith(self._start):
            self.header = (self.lines, line)
        self.blank = self.blank and not line.strip(_ASCII_SPACE)
        return line


def _qualifiers(rec) -> dict[str, str]:
    """A GenBank/EMBL record's `source` feature qualifiers (organism, strain, db_xref, note, ...), repeated
    ones joined with ';'; the record's organism annotation stands in when the source feature has none."""
    out: dict[str, str] = {}
    for feature in rec.features:
        if feature.type == "source":
            for name, values in feature.qualifiers.items():
                out.setdefault(name, ";".join(str(v) for v in values))
            break
    organism = rec.annotations.get("organism")
    if organism and "organism" not in out:
        out["organism"] = str(organism)
    return out


def read_insdc(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    """GenBank and EMBL through Bio.SeqIO: the id is the accession.version (Bio's record.id)."""
    import warnings

    from Bio import BiopythonWarning, SeqIO
    from Bio.Seq import UndefinedSequenceError

    text = _CountingText(io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline=None), fmt)
    start, found = 1, False
    records = SeqIO.parse(text, fmt)
    while True:
        try:
            with warnings.catch_warnings():  # Bio's parser warnings would break the one-line output
                warnings.simplefilter("ignore", BiopythonWarning)
                rec = next(records)
        except StopIteration:
            if not found and not text.blank:  # Bio skips text before the first record, even all of it
                start_line = "'LOCUS'" if fmt == "genbank" else "'ID'"
                raise InputError(path, f"no {fmt} record: no line starts with {start_line}", line=1) from None
            return
        except UnicodeDecodeError:
            raise InputError(path, "not valid UTF-8 text (binary input?)", line=text.lines + 1) from None
        except DECOMPRESS_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - Bio raises ValueError, AssertionError, IndexError... on bad input
            message = printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:200]
            raise InputError(path, f"malformed {fmt} record: {message}", line=max(text.lines, 1)) from None
        try:
            seq = str(rec.seq)
        except UndefinedSequenceError:  # a CONTIG or annotation-only record
            seq = ""
        desc = rec.description.replace("\t", " ")  # as in FASTA headers
        rid = rec.id if rec.id != "<unknown id>" else ""
        short = _length_mismatch(path, fmt, text.header, rid, len(seq))
        yield short or make_record(
            path, rid, desc, seq, start, None, cfg.features, _qualifiers(rec) if cfg.features else None
        )
        start, found = text.lines + 1, True
