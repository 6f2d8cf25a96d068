"""FASTA and FASTQ: the two formats with `>`/`@` headers (id up to the first whitespace, description after it,
declared features from its `name=value` pairs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
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


def read_fasta(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    header: tuple[str, str, int] | None = None
    chunks: list[bytes] = []
    lineno = 0
    for lineno, line in enumerate(stream, 1):  # noqa: B007 - lineno used after the loop
        if line.startswith(b">"):
            if header is not None:
                yield _fasta_record(path, header, chunks, cfg)
            rid, desc = _header(line[1:], path, lineno)
            header, chunks = (rid, desc, lineno), []
        elif header is None:
            if line.strip():
                raise InputError(path, "sequence before the first '>' header (not FASTA?)", line=lineno)
        else:
            if b"\x00" in line:
                raise InputError(path, "binary content (NUL bytes)", line=lineno, record=header[0])
            chunks.append(line)
    if header is not None:
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
    lines = iter(stream)
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
