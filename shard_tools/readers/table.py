"""TSV and CSV tables: a header row naming the sequence column (and id, label and feature columns)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from shard_tools.record import InputError, Record, make_record
from shard_tools.text import control_char

if TYPE_CHECKING:
    from shard_tools.inputs import ReaderConfig


def read_table(stream: IO[bytes], path: str, cfg: ReaderConfig, fmt: str) -> Iterator[Record | InputError]:
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
            yield make_record(path, rid, "", row[seq_i].encode(), lineno, fields, cfg.features, values)
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8 text (binary input?)", line=reader.line_num + 1) from None
    except csv.Error as exc:
        raise InputError(path, f"malformed table: {exc}", line=reader.line_num) from None
