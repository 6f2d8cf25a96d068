"""Streaming readers: FASTA, FASTQ, GenBank, EMBL and TSV/CSV (plain, gz, bz2, xz, zst, or stdin) into records.

Memory is bounded by the longest record, never by the file: records are yielded one at a time, and FASTA/FASTQ
records and lines longer than ReaderConfig.max_length are refused unread.
Every error names the file, the line and the record, because users fix inputs by hand.
A FASTA/FASTQ id is the header up to the first whitespace (space or tab), the rest is the description;
ids, descriptions and table fields holding control characters are refused (shard_tools.text).

FASTA and FASTQ are parsed here, not by dnaio or needletail, though both parse faster
(benchmarks/reader_bench.py): dnaio refuses non-ASCII headers and gives FASTA records no line numbers;
needletail reads only named files (no stdin stream), has no line numbers and replaces invalid UTF-8
silently. Parsing is 5-10 % of a shard-fasta run. Measurements: docs/INPUTS.md.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import lzma
import math
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
import zstandard

from shard_tools.alphabet import InvalidSequenceError, encode
from shard_tools.text import control_char, printable

FORMATS = ("fasta", "fastq", "genbank", "embl", "tsv", "csv")
STDIN = "-"
STDIN_NAME = "<stdin>"
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_NAME_FORMATS = {".gb": "genbank", ".gbk": "genbank", ".gbff": "genbank", ".genbank": "genbank", ".embl": "embl"}
# What a corrupt or truncated compressed stream raises (zlib.error is not an OSError).
_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error)


class _ZstdReader(io.RawIOBase):
    """Concatenated zstd frames, with EOFError when the input stops inside a frame.

    zstandard's own readers return the data decoded so far and then end-of-file on a truncated input,
    which would silently drop every record after the cut; gzip, bz2 and lzma raise EOFError, so this does too.
    """

    def __init__(self, raw: IO[bytes]):
        self._raw, self._dctx = raw, zstandard.ZstdDecompressor()
        self._frame: zstandard.ZstdDecompressionObj | None = None  # None between frames
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._out:
            data = self._raw.read(1 << 16)
            if not data:
                if self._frame is not None:
                    raise EOFError("compressed file ended before the end of a zstd frame (truncated?)")
                return 0
            self._out = memoryview(self._decompress(data))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            out.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            data, self._frame = self._frame.unused_data, None
        return b"".join(out)


class _CrToLf(io.RawIOBase):
    """A byte stream with every CR turned into LF: old Mac (CR-only) line endings read as line endings."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._raw.read1(len(buffer))  # type: ignore[attr-defined]  # what a pipe has, without waiting
        buffer[: len(data)] = data.replace(b"\r", b"\n")
        return len(data)


_MAGIC = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f),
    b"BZh": bz2.BZ2File,
    b"\xfd7zXZ\x00": lzma.LZMAFile,
    b"\x28\xb5\x2f\xfd": lambda f: io.BufferedReader(_ZstdReader(f), 1 << 16),
}


def display_name(path: str | Path) -> str:
    """The name an error message shows: `<stdin>` for '-', control characters escaped."""
    return STDIN_NAME if str(path) == STDIN else printable(str(path))


class InputError(ValueError):
    """Bad input, with enough context (file, line, record) for a one-line message."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, record: str | None = None):
        where = display_name(path) + (f":{line}" if line is not None else "")
        what = f"record {record!r}: " if record is not None else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.record = display_name(path), line, record


@dataclass
class Record:
    """One normalised input sequence; `fields` carries labels and other table columns, `features` the declared
    features (ReaderConfig.features), typed, None where the record has no value."""

    id: str
    description: str
    tokens: np.ndarray
    source: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)
    features: dict[str, float | str | None] = field(default_factory=dict)


FEATURE_KINDS = ("numeric", "categorical")
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# A number as a table or header writes it: plain decimal or scientific, ASCII digits only (not `1_000` or `٣`).
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
# A feature value that means "no value" (compared case-insensitively, after stripping spaces): an empty cell,
# qualifier or header value, and the spellings of one that R, pandas, VCF/GFF and BLAST-style tables write.
MISSING = frozenset({"", "na", "n/a", "nan", "none", "null", ".", "-"})


@dataclass(frozen=True)
class FeatureColumn:
    """A per-record feature the user declares: where it comes from depends on the format (a table column,
    a FASTA/FASTQ header `name=value` pair, a GenBank/EMBL source qualifier); numeric values are floats."""

    name: str
    kind: str = "categorical"  # numeric | categorical


def parse_feature_column(text: str) -> FeatureColumn:
    """`NAME[:numeric|categorical]` (the --feature-column flag), categorical by default."""
    name, _, kind = text.partition(":")
    name, kind = name.strip(), (kind.strip() or "categorical")
    # A name a --where filter can write: letters, digits, '_' and '.', not starting with a digit, not a keyword.
    if not FEATURE_NAME.fullmatch(name) or name in ("and", "or", "not", "in"):
        raise ValueError(
            f"--feature-column: want NAME[:numeric|categorical] with NAME of letters, digits, '_' and '.' "
            f"(not starting with a digit, not and/or/not/in), got {text!r}"
        )
    if kind not in FEATURE_KINDS:
        raise ValueError(f"--feature-column {text}: kind must be numeric or categorical, got {kind!r}")
    return FeatureColumn(name, kind)


DEFAULT_MAX_LENGTH = 300_000_000


@dataclass(frozen=True)
class ReaderConfig:
    format: str = "auto"  # auto | fasta | fastq | genbank | embl | tsv | csv
    seq_column: str = "sequence"
    id_column: str | None = None
    label_column: str | None = None
    skip_invalid: bool = False  # count and skip bad records instead of stopping
    features: tuple[FeatureColumn, ...] = ()  # the user's per-record features to keep
    # Longest FASTA/FASTQ record (or line) read, in bases: memory is about 3 bytes a base of the longest record,
    # so a record longer than this (a concatenated file, a decompression bomb) is refused, not read until memory
    # runs out. The default holds the longest human chromosome (249 Mb).
    max_length: int = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        if type(self.max_length) is not int or self.max_length < 1:
            raise ValueError(f"max_length: must be an integer >= 1, got {self.max_length!r}")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"--feature-column: {names} names a feature twice")


@contextlib.contextmanager
def open_binary(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a possibly compressed file ('-': standard input), choosing the codec by magic bytes, not by name."""
    with contextlib.ExitStack() as stack:
        raw = sys.stdin.buffer if str(path) == STDIN else stack.enter_context(open(path, "rb"))
        if not isinstance(raw, io.BufferedReader):
            raw = io.BufferedReader(raw)  # type: ignore[arg-type]
        head = raw.peek(6)[:6]
        wrap = next((w for magic, w in _MAGIC.items() if head.startswith(magic)), None)
        yield stack.enter_context(wrap(raw)) if wrap else raw


@contextlib.contextmanager
def unchanged(path: str | Path) -> Iterator[None]:
    """Refuse, when the block has read a regular file to its end, a file whose size changed meanwhile (another
    program writing or truncating it): the last record read may be cut short, and the size recorded at the start
    would not be the file's."""
    try:
        before = os.stat(path).st_size if str(path) != STDIN and os.path.isfile(path) else None
    except OSError:
        before = None
    yield
    if before is not None:
        try:
            after = os.stat(path).st_size
        except OSError as exc:
            raise InputError(path, f"gone while read ({exc.strerror}); read it again") from None
        if after != before:
            raise InputError(path, f"changed while read ({before:,} bytes when opened, {after:,} at the end): its "
                             "last records may be cut short; read it again when nothing writes it")  # fmt: skip


def check_input_paths(paths: list[str]) -> None:
    """Refuse, before anything is read, an input that is missing, a directory, or given twice (the same file
    under two names too: same device and inode), each with a one-line InputError naming it."""
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        if path == STDIN:
            try:  # stdin redirected from a file that is also named: `shard-fasta a.fa - out < a.fa`
                st = os.fstat(sys.stdin.fileno())
            except (OSError, ValueError, AttributeError):  # no real stdin (closed, or replaced in-process)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
        else:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise InputError(path, "no such file") from None
            except OSError as exc:
                raise InputError(path, f"cannot read: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                raise InputError(path, "is a directory, not a sequence file; give the files inside it (e.g. DIR/*.fa)")
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            same = "given twice" if seen[ident] == path else f"the same file as {display_name(seen[ident])}"
            raise InputError(path, f"{same}; each input may be given once (its records would be read twice)")
        seen[ident] = path


def _name_format(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return _NAME_FORMATS.get(Path(name).suffix)


def detect_format(path: str | Path, head: bytes) -> str:
    """Format from the first non-blank byte, falling back to the file name for tables."""
    stripped = head.lstrip()
    if b"\x00" in head:
        raise InputError(
            path, "binary content (NUL bytes); expected FASTA, FASTQ, GenBank, EMBL or a TSV/CSV table", line=1
        )
    if stripped.startswith(b">"):
        return "fasta"
    if stripped.startswith(b"@"):
        return "fastq"
    if stripped.startswith(b"LOCUS "):
        return "genbank"
    if stripped.startswith(b"ID   "):
        return "embl"
    if _name_format(path):
        return _name_format(path)  # type: ignore[return-value]
    first = stripped.split(b"\n", 1)[0]
    name = Path(path).name.lower()
    if b"\t" in first or any(s in name for s in (".tsv", ".txt", ".tab")):
        return "tsv"
    if b"," in first or ".csv" in name:
        return "csv"
    if not stripped:
        return "fasta"  # an empty file is an empty FASTA, reported as "no records"
    raise InputError(
        path,
        "cannot tell the format: expected '>' (FASTA), '@' (FASTQ), 'LOCUS' (GenBank), 'ID' (EMBL) or a table header",
        line=1,
    )


def read_records(path: str | Path, cfg: ReaderConfig, skipped: list[str] | None = None) -> Iterator[Record]:
    """Yield normalised records from one file; bad records raise InputError or, when skipping, go to `skipped`. A
    file that changes size while read is an InputError once it has been read (`unchanged`)."""
    with unchanged(path), open_binary(path) as stream:
        buffered = io.BufferedReader(stream) if not isinstance(stream, io.BufferedReader) else stream
        try:
            buffered, head = _text_start(buffered, path)
        except _DECOMPRESS_ERRORS as exc:
            raise InputError(path, f"cannot decompress: {exc}") from None
        fmt = cfg.format if cfg.format != "auto" else detect_format(path, head)
        parsers = {"fasta": _fasta, "fastq": _fastq, "genbank": _insdc, "embl": _insdc, "tsv": _table, "csv": _table}
        parser = parsers[fmt]
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


_UTF8_BOM = b"\xef\xbb\xbf"


def _text_start(stream: io.BufferedReader, path: str | Path) -> tuple[io.BufferedReader, bytes]:
    """The stream past a UTF-8 byte-order mark, CR-only line endings turned into LF, and its first 4 kB.

    Both come from editors and spreadsheets on Windows and old Macs; any codec, any format, stdin too.
    """
    head = stream.peek(4096)[:4096]
    if head.startswith(_UTF8_BOM):
        stream.read(len(_UTF8_BOM))
        head = stream.peek(4096)[:4096]
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(path, "UTF-16 text (byte-order mark); save it as UTF-8 (iconv -f UTF-16 -t UTF-8)", line=1)
    if b"\r" in head[:-1] and b"\n" not in head:  # old Mac line endings (a CRLF's LF may be just past the head)
        stream = io.BufferedReader(_CrToLf(stream), 1 << 16)
        head = stream.peek(4096)[:4096]
    return stream, head


def _make(
    path: str,
    rid: str,
    desc: str,
    seq: bytes | str,
    line: int,
    fields: dict | None = None,
    features: tuple[FeatureColumn, ...] = (),
    values: dict[str, str] | None = None,
) -> Record | InputError:
    """A Record, or the InputError saying what is wrong with it. `values`: the raw text of each feature the
    record holds (a table row, a header's pairs, a source feature's qualifiers), typed here for `features`."""
    if not rid:
        return InputError(path, "empty record id", line=line, record=rid)
    if not (rid.isprintable() and desc.isprintable()) or fields:  # printable text holds no control character
        texts = {"id": rid, "description": desc, **{f"column {k!r}": v for k, v in (fields or {}).items()}}
        for what, text in texts.items():
            bad = control_char(text)
            if bad is not None:
                hint = " (CR, old Mac line endings? convert: tr '\\r' '\\n' < IN > OUT)" if bad == "\r" else ""
                message = f"control character {bad!r} in the {what}; refused{hint}"
                return InputError(path, message, line=line, record=rid)
    try:
        tokens = encode(seq)
    except InvalidSequenceError as exc:
        return InputError(path, f"{exc} (not DNA; protein or binary input?)", line=line, record=rid)
    if tokens.size == 0:
        return InputError(path, "no sequence", line=line, record=rid)
    typed: dict[str, float | str | None] = {}
    for f in features:
        raw = (values or {}).get(f.name)
        text = raw.strip() if raw is not None else ""
        if text.lower() in MISSING:
            typed[f.name] = None
        elif f.kind == "categorical":
            if (bad := control_char(text)) is not None:
                return InputError(path, f"control character {bad!r} in feature {f.name!r}", line=line, record=rid)
            typed[f.name] = text
        else:
            number = float(text) if _NUMBER.fullmatch(text) else math.nan
            if not math.isfinite(number):
                message = f"feature {f.name!r} is declared numeric but holds {printable(text)[:60]!r}"
                return InputError(path, message, line=line, record=rid)
            typed[f.name] = number
    return Record(rid, desc, tokens, path, line, fields or {}, typed)


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


_ASCII_SPACE = " \t\r\n\v\f"
_SPACES = bytes.maketrans(b"\t\v\f", b"   ")


def _lines(stream: IO[bytes], path: str, limit: int) -> Iterator[bytes]:
    """The stream's lines, none read whole if longer than `limit` bases and a line end (an InputError instead)."""
    for lineno, line in enumerate(iter(partial(stream.readline, limit + 3), b""), 1):
        if len(line) > limit + 2 or (len(line) > limit and not line.endswith(b"\n")):
            raise InputError(path, f"a line longer than --max-length {limit:,} bases: not read into memory; "
                             "split the record, or raise --max-length", line=lineno)  # fmt: skip
        yield line


def _fasta(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
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
    return _make(path, rid, desc, seq, line, None, cfg.features, values)


def _fastq(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
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


def _table(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(text, delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=1) from None
    for name in header:  # column names become metadata keys
        if control_char(name) is not None:
            raise InputError(path, f"control character {control_char(name)!r} in column name {name!r}", line=1)
    wanted = [c for c in (cfg.seq_column, cfg.id_column, cfg.label_column) if c] + [f.name for f in cfg.features]
    for col in wanted:
        if col not in header:
            raise InputError(path, f"no column {col!r} in header {header}", line=1)
        if header.count(col) > 1:  # which one was meant cannot be told
            raise InputError(path, f"column {col!r} appears {header.count(col)} times in the header", line=1)
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
            values = dict(zip(header, row)) if cfg.features else None  # the columns stay in fields too
            yield _make(path, rid, "", row[seq_i].encode(), lineno, fields, cfg.features, values)
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=reader.line_num + 1) from None
    except csv.Error as exc:
        raise InputError(path, f"malformed table: {exc}", line=reader.line_num) from None


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


def _insdc(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
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
        except _DECOMPRESS_ERRORS:
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
        yield short or _make(
            path, rid, desc, seq, start, None, cfg.features, _qualifiers(rec) if cfg.features else None
        )
        start, found = text.lines + 1, True
