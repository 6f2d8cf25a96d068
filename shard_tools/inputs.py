"""Streaming readers: FASTA, FASTQ and TSV/CSV (plain, gz, bz2, xz, zst) into normalised records.

Memory is bounded by the longest record, never by the file: records are yielded one at a time.
Every error names the file, the line and the record, because users fix inputs by hand.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import zstandard

from shard_tools.alphabet import InvalidSequenceError, encode

FORMATS = ("fasta", "fastq", "tsv", "csv")
_MAGIC = {
    b"\x1f\x8b": gzip.open,
    b"BZh": bz2.open,
    b"\xfd7zXZ\x00": lzma.open,
    b"\x28\xb5\x2f\xfd": lambda p, mode: zstandard.open(p, mode),
}
# What a corrupt or truncated compressed stream raises (zlib.error is not an OSError).
_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error)


class InputError(ValueError):
    """Bad input, with enough context (file, line, record) for a one-line message."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, record: str | None = None):
        where = f"{path}" + (f":{line}" if line is not None else "")
        what = f"record {record!r}: " if record is not None else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.record = str(path), line, record


@dataclass
class Record:
    """One normalised input sequence; `fields` carries labels and other table columns."""

    id: str
    description: str
    tokens: np.ndarray
    source: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReaderConfig:
    format: str = "auto"  # auto | fasta | fastq | tsv | csv
    seq_column: str = "sequence"
    id_column: str | None = None
    label_column: str | None = None
    skip_invalid: bool = False  # count and skip bad records instead of stopping


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a possibly compressed file, choosing the codec by magic bytes rather than by name."""
    with open(path, "rb") as raw:
        head = raw.read(6)
    for magic, opener in _MAGIC.items():
        if head.startswith(magic):
            return opener(path, "rb")
    return open(path, "rb")


def detect_format(path: str | Path, head: bytes) -> str:
    """Format from the first non-blank byte, falling back to the file name for tables."""
    stripped = head.lstrip()
    if b"\x00" in head:
        raise InputError(path, "binary content (NUL bytes); expected FASTA, FASTQ or a TSV/CSV table", line=1)
    if stripped.startswith(b">"):
        return "fasta"
    if stripped.startswith(b"@"):
        return "fastq"
    first = stripped.split(b"\n", 1)[0]
    name = Path(path).name.lower()
    if b"\t" in first or any(s in name for s in (".tsv", ".txt", ".tab")):
        return "tsv"
    if b"," in first or ".csv" in name:
        return "csv"
    if not stripped:
        return "fasta"  # an empty file is an empty FASTA, reported as "no records"
    raise InputError(path, "cannot tell the format: expected '>' (FASTA), '@' (FASTQ) or a table header", line=1)


def read_records(path: str | Path, cfg: ReaderConfig, skipped: list[str] | None = None) -> Iterator[Record]:
    """Yield normalised records from one file; bad records raise InputError or, when skipping, go to `skipped`."""
    with open_binary(path) as stream:
        buffered = io.BufferedReader(stream) if not isinstance(stream, io.BufferedReader) else stream
        try:
            head = buffered.peek(4096)[:4096]
        except _DECOMPRESS_ERRORS as exc:
            raise InputError(path, f"cannot decompress: {exc}") from None
        fmt = cfg.format if cfg.format != "auto" else detect_format(path, head)
        parser = {"fasta": _fasta, "fastq": _fastq, "tsv": _table, "csv": _table}[fmt]
        try:
            for item in parser(buffered, str(path), cfg, fmt):
                if isinstance(item, InputError):
                    if not cfg.skip_invalid:
                        raise item
                    if skipped is not None:
                        skipped.append(str(item))
                    continue
                yield item
        except _DECOMPRESS_ERRORS as exc:
            raise InputError(path, f"cannot decompress: {exc}") from None


def _make(path: str, rid: str, desc: str, seq: bytes, line: int, fields: dict | None = None) -> Record | InputError:
    if not rid:
        return InputError(path, "empty record id", line=line, record=rid)
    try:
        tokens = encode(seq)
    except InvalidSequenceError as exc:
        return InputError(path, f"{exc} (not DNA; protein or binary input?)", line=line, record=rid)
    if tokens.size == 0:
        return InputError(path, "no sequence", line=line, record=rid)
    return Record(rid, desc, tokens, path, line, fields or {})


def _text(raw: bytes, path: str, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "header is not valid UTF-8 (binary input?)", line=lineno) from None


def _fasta(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    header: tuple[str, str, int] | None = None
    chunks: list[bytes] = []
    lineno = 0
    for lineno, line in enumerate(stream, 1):  # noqa: B007 - lineno used after the loop
        if line.startswith(b">"):
            if header is not None:
                yield _make(path, header[0], header[1], b"".join(chunks), header[2])
            text = _text(line[1:], path, lineno).strip()
            rid, _, desc = text.partition(" ")
            header, chunks = (rid, desc.strip(), lineno), []
        elif header is None:
            if line.strip():
                raise InputError(path, "sequence before the first '>' header (not FASTA?)", line=lineno)
        else:
            if b"\x00" in line:
                raise InputError(path, "binary content (NUL bytes)", line=lineno, record=header[0])
            chunks.append(line)
    if header is not None:
        yield _make(path, header[0], header[1], b"".join(chunks), header[2])


def _fastq(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    lines = iter(stream)
    lineno = 0
    for head in lines:
        lineno += 1
        if not head.strip():
            continue
        if not head.startswith(b"@"):
            raise InputError(path, "expected a FASTQ '@' header", line=lineno)
        rid, _, desc = _text(head[1:], path, lineno).strip().partition(" ")
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
        yield _make(path, rid, desc.strip(), seq, start)


def _table(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(text, delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=1) from None
    wanted = [c for c in (cfg.seq_column, cfg.id_column, cfg.label_column) if c]
    for col in wanted:
        if col not in header:
            raise InputError(path, f"no column {col!r} in header {header}", line=1)
    seq_i = header.index(cfg.seq_column)
    id_i = header.index(cfg.id_column) if cfg.id_column else None
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            rid = row[id_i].strip() if id_i is not None and id_i < len(row) else f"row{lineno - 1}"
            if len(row) != len(header):
                yield InputError(path, f"{len(row)} columns, header has {len(header)}", line=lineno, record=rid)
                continue
            fields = {h: v.strip() for h, v in zip(header, row) if h != cfg.seq_column and h != cfg.id_column}
            if cfg.label_column:
                fields["label"] = fields.pop(cfg.label_column)
            yield _make(path, rid, "", row[seq_i].encode(), lineno, fields)
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=reader.line_num + 1) from None
    except csv.Error as exc:
        raise InputError(path, f"malformed table: {exc}", line=reader.line_num) from None
