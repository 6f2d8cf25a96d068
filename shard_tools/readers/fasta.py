"""FASTA and FASTQ: the two formats with `>`/`@` headers (id up to the first whitespace, description after it,
declared features from its `name=value` pairs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import IO, TYPE_CHECKING

from shard_tools.record import InputError, Record, make_record

if TYPE_CHECKING:
    from shard_tools.inputs import ReaderConfig

# `name=value` in a FASTA/FASTQ description; a value with spaces goes in double quotes: note="two words".
_PAIR = re.compile(r'(?:^|\s)([^\s=]+)=(?:"([^"]*)"|(\S*))')


def header_pairs(desc: str) -> dict[str, str]:
    """The `name=value` pairs of a FASTA/FASTQ header's description (the first of a name repeated)."""
    out: dict[str, str] = {}
    for m in _PAIR.finditer(desc):
        if m.group(2) is None and m.group(3).startswith('"'):
            raise ValueError(f"header value of {m.group(1)!r} opens a quote it does not close")
        out.setdefault(m.group(1), m.group(2) if m.group(2) is not None else m.group(3))
    return out


def _header(raw: bytes, path: str, lineno: int) -> tuple[str, str]:
    """(id, description): the id ends at the first whitespace, tab included; tabs in the description become spaces."""
    parts = raw.split(None, 1)  # ASCII whitespace: space, tab, CR, LF, VT, FF
    try:
        if len(parts) == 2:
            return parts[0].decode(), parts[1].rstrip().translate(_SPACES).decode()
        return (parts[0].decode() if parts else ""), ""
    except UnicodeDecodeError:
        raise InputError(path, "header is not valid UTF-8 (binary input?)", line=lineno) from None


_SPACES = bytes.maketrans(b"\t\v\f", b"   ")


def _lines(stream: IO[bytes], path: str, limit: int) -> Iterator[bytes]:
    """The stream's lines, none read whole if longer than `limit` bases and a line end (an InputError instead)."""
    for lineno, line in enumerate(iter(partial(stream.readline, limit + 3), b""), 1):
        if len(line) > limit + 2 or (len(line) > limit and not line.endswith(b"\n")):
            raise InputError(path, f"a line longer than --max-length {limit:,} bases: not read into memory; "
                             "split the record, or raise --max-length", line=lineno)  # fmt: skip
        yield line


def read_fasta(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    """FASTA records. Lines are read in pieces of at most cfg.max_length bytes, so memory stays bounded by
    about 3 bytes a base of max_length however long a line or a record is: a longer record is an InputError
    naming it, and its remaining lines are skipped unread into memory."""
    header: tuple[str, str, int] | None = None
    chunks: list[bytes] = []
    size: int | None = 0  # bases held for the record; None once over cfg.max_length (its rest is skipped)
    lineno, at_start = 0, True
    for piece in iter(partial(stream.readline, cfg.max_length + 2), b""):
        starts, at_start = at_start, piece.endswith(b"\n")
        lineno += starts
        if starts and piece.startswith(b">"):
            if not at_start:
                raise InputError(path, f"a header line longer than {cfg.max_length + 1:,} bytes", line=lineno)
            if header is not None and size is not None:
                yield _fasta_record(path, header, chunks, cfg)
            rid, desc = _header(piece[1:], path, lineno)
            header, chunks, size = (rid, desc, lineno), [], 0
        elif header is None:
            if piece.strip():
                raise InputError(path, "sequence before the first '>' header (not FASTA?)", line=lineno)
        elif size is not None:
            if b"\x00" in piece:
                raise InputError(path, "binary content (NUL bytes)", line=lineno, record=header[0])
            chunks.append(piece)
            size += len(piece.rstrip())
            if size > cfg.max_length:
                yield InputError(path, f"longer than --max-length {cfg.max_length:,} bases: not read into memory "
                                 "(about 3 bytes a base); split the record, or raise --max-length", line=header[2],
                                 record=header[0])  # fmt: skip
                chunks, size = [], None
    if header is not None and size is not None:
        yield _fasta_record(path, header, chunks, cfg)


def _fasta_record(
    path: str, header: tuple[str, str, int], chunks: list[bytes], cfg: ReaderConfig
) -> Record | InputError:
    rid, desc, line = header
    return _make_with_pairs(path, rid, desc, b"".join(chunks), line, cfg)


def _make_with_pairs(path: str, rid: str, desc: str, seq: bytes, line: int, cfg: ReaderConfig) -> Record | InputError:
    """A FASTA/FASTQ record, its declared features read from the header's NAME=value pairs."""
    try:
        values = header_pairs(desc) if cfg.features else None
    except ValueError as exc:
        return InputError(path, str(exc), line=line, record=rid)
    return make_record(path, rid, desc, seq, line, None, cfg.features, values)


def read_fastq(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    lines = _lines(stream, path, cfg.max_length)
    lineno = 0
    for head in lines:
        lineno += 1
        if not head.strip():
            continue
        if not head.startswith(b"@"):
            raise InputError(path, "expected a FASTQ '@' header", line=lineno)
        rid, desc = _header(head[1:], path, lineno)
        start = lineno
        try:
            seq, plus, qual = next(lines), next(lines), next(lines)
        except StopIteration:
            raise InputError(path, "truncated FASTQ record", line=start, record=rid) from None
        lineno += 3
        if not plus.startswith(b"+"):
            yield InputError(path, "missing '+' separator line", line=start + 2, record=rid)
            continue
        if len(seq.strip()) != len(qual.strip()):
            yield InputError(
                path,
                f"quality length {len(qual.strip())} != sequence length {len(seq.strip())}",
                line=start + 3,
                record=rid,
            )
            continue
        yield _make_with_pairs(path, rid, desc, seq, start, cfg)
