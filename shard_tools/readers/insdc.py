"""GenBank and EMBL through Bio.SeqIO, with line numbers in errors, the declared length checked and memory bounded
by --max-length (a longer sequence is not passed to Bio)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from shard_tools.compression import DECOMPRESS_ERRORS
from shard_tools.record import LINE_SLACK, InputError, Record, make_record, over_long_line
from shard_tools.text import printable

if TYPE_CHECKING:
    from shard_tools.inputs import ReaderConfig

_ASCII_SPACE = " \t\r\n\v\f"
# The line that opens a record's sequence (GenBank "ORIGIN", EMBL "SQ   Sequence 5386 BP; ..."); "//" ends it.
_SEQUENCE_START = {"genbank": "ORIGIN", "embl": "SQ "}
# Every byte but an ASCII letter: deleted to count a sequence line's bases (not its spaces and coordinates).
_NOT_LETTERS = bytes(b for b in range(256) if not chr(b).isascii() or not chr(b).isalpha())
TEXT_SLACK = 64 << 20  # a record's text outside its sequence may hold 4 x --max-length and this many characters


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
    warns about (GenBank).

    It also bounds what Bio holds (Bio reads a record whole): a record's sequence lines stop being passed on once
    they hold more than max_length bases (its later sequence lines are read and dropped up to its `//`, and `over`
    is set for the reader to refuse the record); a line longer than max_length + LINE_SLACK characters, or a record
    whose text outside the sequence passes 4 x max_length + TEXT_SLACK (a feature table without end), is an
    InputError."""

    def __init__(self, text: IO[str], fmt: str, path: str, max_length: int):
        self._text, self.lines, self.blank = text, 0, True  # blank: nothing but whitespace read so far
        self._start, self._sequence = _DECLARED_LENGTH[fmt][0], _SEQUENCE_START[fmt]
        self._path, self.max_length, self._cap = path, max_length, max_length + LINE_SLACK
        self.header: tuple[int, str] | None = None  # (line number, text) of the last LOCUS / ID line
        self.over = False  # the current record's sequence passed max_length: its rest was not passed on
        self._bases: int | None = None  # bases of the current record's sequence so far; None outside a sequence
        self._chars = 0  # characters of the current record outside its sequence

    def read(self, size: int = -1) -> str:
        return self._text.read(size)

    def readline(self, size: int = -1) -> str:
        """The next line for Bio (whole: `size` is ignored), past those of a sequence over max_length."""
        while True:
            line = self._line()
            if line.startswith(self._start):  # a new record (a missing `//` ends the sequence too)
                self.header, self.over, self._bases, self._chars = (self.lines, line), False, None, 0
            elif self._bases is not None:  # inside the sequence
                if line.strip(_ASCII_SPACE) != "//" and line:
                    self._bases += len(line.encode().translate(None, _NOT_LETTERS))
                    if self._bases > self.max_length:
                        self.over = True  # this line and the rest of the sequence stay unread by Bio
                        continue
                    return line
                self._bases = None  # its end (or the file's)
                return line
            elif line.startswith(self._sequence):
                self._bases = 0
            self._chars += len(line)
            if self._chars > 4 * self.max_length + TEXT_SLACK and self.header:
                raise InputError(self._path, f"the record from line {self.header[0]} has over "
                                 f"{4 * self.max_length + TEXT_SLACK:,} characters outside its sequence (4 x "
                                 "--max-length + 64 MiB): not read into memory; an unended feature table?",
                                 line=self.lines)  # fmt: skip
            return line

    def _line(self) -> str:
        """One line of the stream, counted, never read whole if longer than max_length + LINE_SLACK."""
        line = self._text.readline(self._cap + 2)
        if len(line.rstrip("\n")) > self._cap:
            raise over_long_line(self._path, self._cap, self.lines + 1, "not GenBank/EMBL, or raise --max-length")
        self.lines += line.endswith("\n")
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

    wrapper = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline=None)
    text = _CountingText(wrapper, fmt, path, cfg.max_length)
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
        except (InputError, *DECOMPRESS_ERRORS):  # a line or record over the bounds (_CountingText), the codec's
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
        if text.over:  # Bio saw only its first max_length bases or so: neither read nor length-checked
            yield InputError(path, f"longer than --max-length {cfg.max_length:,} bases: not read into memory; "
                             "split the record, or raise --max-length", line=text.header[0] if text.header else start,
                             record=rid)  # fmt: skip
        else:
            short = _length_mismatch(path, fmt, text.header, rid, len(seq))
            yield short or make_record(
                path, rid, desc, seq, start, None, cfg.features, _qualifiers(rec) if cfg.features else None
            )
        start, found = text.lines + 1, True
