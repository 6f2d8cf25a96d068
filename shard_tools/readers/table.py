"""TSV and CSV tables: a header row naming the sequence column (and id, label and feature columns). Memory is
bounded by --max-length: lines are read in bounded pieces, and a longer sequence cell is an error naming the row."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from functools import partial
from typing import IO, TYPE_CHECKING

from shard_tools.record import LINE_SLACK, InputError, Record, make_record, over_long_line
from shard_tools.text import control_char

if TYPE_CHECKING:
    from shard_tools.inputs import ReaderConfig


@contextlib.contextmanager
def _field_limit(size: int) -> Iterator[None]:
    """csv's field size limit (131,072 characters by default, less than a sequence may be) set to `size` for one
    block only: it is the whole process's."""
    saved = csv.field_size_limit(size)
    try:
        yield
    finally:
        csv.field_size_limit(saved)


def _lines(text: IO[str], path: str, cap: int) -> Iterator[str]:
    """The text's lines, none read whole if longer than `cap` characters (an InputError naming it instead)."""
    for lineno, line in enumerate(iter(partial(text.readline, cap + 2), ""), 1):
        if len(line.rstrip("\r\n")) > cap:
            raise over_long_line(path, cap, lineno, "split the record, or raise --max-length")
        yield line


def read_table(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    cap = cfg.max_length + LINE_SLACK
    reader = csv.reader(_lines(text, path, cap), delimiter="\t" if fmt == "tsv" else ",")
    rows = partial(next, reader, None)
    try:
        with _field_limit(cap):
            first = rows()
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=1) from None
    except csv.Error as exc:
        raise InputError(path, f"malformed table: {exc}", line=reader.line_num) from None
    if first is None:
        return
    header = [h.strip() for h in first]
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
        while True:
            with _field_limit(cap):
                row = rows()
            if row is None:
                break
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            rid = row[id_i].strip() if id_i is not None and id_i < len(row) else f"row{lineno - 1}"
            if len(row) != len(header):
                yield InputError(path, f"{len(row)} columns, header has {len(header)}", line=lineno, record=rid)
                continue
            if len(row[seq_i].strip()) > cfg.max_length:
                yield InputError(path, f"longer than --max-length {cfg.max_length:,} bases: split the record, or "
                                 "raise --max-length", line=lineno, record=rid)  # fmt: skip
                continue
            fields = {h: v.strip() for h, v in zip(header, row) if h != cfg.seq_column and h != cfg.id_column}
            if cfg.label_column:
                fields["label"] = fields.pop(cfg.label_column)
            values = dict(zip(header, row)) if cfg.features else None  # the columns stay in fields too
            yield make_record(path, rid, "", row[seq_i].encode(), lineno, fields, cfg.features, values)
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=reader.line_num + 1) from None
    except csv.Error as exc:
        raise InputError(path, f"malformed table: {exc}", line=reader.line_num) from None
