"""Streaming input: FASTA, FASTQ, GenBank, EMBL and TSV/CSV (plain, gz, bz2, xz, zst, or stdin) into records.

This module is the front: `read_records` opens a file (compression.py picks the codec by magic bytes), finds
its format (detect.py) and hands the stream to that format's reader (readers/), skipping or raising bad
records. Memory is bounded by the longest record, never by the file: records are yielded one at a time, and
records and lines longer than ReaderConfig.max_length are refused unread (FASTA/FASTQ, GenBank/EMBL sequences;
a table's line past max_length + 1 MiB).
Every error names the file, the line and the record (record.InputError), because users fix inputs by hand.
A FASTA/FASTQ id is the header up to the first whitespace (space or tab), the rest is the description;
ids, descriptions and table fields holding control characters are refused (shard_tools.text).

FASTA and FASTQ are parsed here, not by dnaio or needletail, though both parse faster
(benchmarks/reader_bench.py): dnaio refuses non-ASCII headers and gives FASTA records no line numbers;
needletail reads only named files (no stdin stream), has no line numbers and replaces invalid UTF-8
silently. Parsing is 5-10 % of a shard-fasta run. Measurements: docs/INPUTS.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shard_tools.compression import DECOMPRESS_ERRORS, open_binary, text_start
from shard_tools.declared import DeclaredFeature
from shard_tools.detect import detect_format
from shard_tools.readers.fasta import read_fasta, read_fastq
from shard_tools.readers.insdc import read_insdc
from shard_tools.readers.table import read_table
from shard_tools.record import STDIN, InputError, Record, display_name

READERS = {"fasta": read_fasta, "fastq": read_fastq, "genbank": read_insdc, "embl": read_insdc, "tsv": read_table,
           "csv": read_table}  # fmt: skip


DEFAULT_MAX_LENGTH = 300_000_000


@dataclass(frozen=True)
class ReaderConfig:
    format: str = "auto"  # auto | fasta | fastq | genbank | embl | tsv | csv
    seq_column: str = "sequence"
    id_column: str | None = None
    label_column: str | None = None
    skip_invalid: bool = False  # count and skip bad records instead of stopping
    features: tuple[DeclaredFeature, ...] = ()  # the user's per-record features to keep
    # Longest record (or FASTA/FASTQ line) read, in bases, in every format: memory is about 3 bytes a base of it,
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


def read_records(path: str | Path, cfg: ReaderConfig, skipped: list[str] | None = None) -> Iterator[Record]:
    """Yield normalised records from one file; bad records raise InputError or, when skipping, go to `skipped`. A
    file that changes size while read is an InputError once it has been read (`unchanged`)."""
    with unchanged(path), open_binary(path) as stream:
        buffered = io.BufferedReader(stream) if not isinstance(stream, io.BufferedReader) else stream
        try:
            buffered, head = text_start(buffered, path)
        except DECOMPRESS_ERRORS as exc:
            raise InputError(path, f"cannot decompress: {exc}") from None
        fmt = cfg.format if cfg.format != "auto" else detect_format(path, head)
        try:
            for item in READERS[fmt](buffered, str(path), cfg, fmt):
                if isinstance(item, InputError):
                    if not cfg.skip_invalid:
                        raise item
                    if skipped is not None:
                        skipped.append(str(item))
                    continue
                yield item
        except DECOMPRESS_ERRORS as exc:
            raise InputError(path, f"cannot decompress: {exc}") from None
