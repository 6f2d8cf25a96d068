"""The one reader of a user's input into records: a FASTA/FASTQ/TSV file, '-' (stdin) or a shard folder.

Every command (embed, search, eval, reconstruct) reads its inputs here, so ids and labels come out the same
way everywhere: a table's label column or the shards' metadata first, else the header (`parse_label`).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gene_ae.labels import parse_label
from shard_tools.inputs import ReaderConfig, read_records


@dataclass
class InputRecord:
    id: str
    tokens: np.ndarray
    label: str | None = None


def iter_input(
    path: str | Path, reader_cfg: ReaderConfig | None = None, splits: Sequence[str] = ("train", "val")
) -> Iterator[InputRecord]:
    """Records of a file, '-' (stdin, spooled to a temporary file that is removed after) or a shard folder
    (its `splits`, in that order)."""
    from shard_tools.reader import read_shards

    if str(path) != "-" and Path(path).is_dir():
        for split in splits:
            for rid, tokens, meta in read_shards(path, split):
                yield InputRecord(rid, tokens, meta.get("label") or parse_label(f"{rid} {meta.get('desc', '')}"))
        return
    cfg = reader_cfg or ReaderConfig()
    if str(path) == "-":
        with tempfile.NamedTemporaryFile(suffix=".fa") as tmp:
            tmp.write(sys.stdin.buffer.read())
            tmp.flush()
            yield from _from_file(tmp.name, cfg)
        return
    yield from _from_file(path, cfg)


def _from_file(path: str | Path, cfg: ReaderConfig) -> Iterator[InputRecord]:
    for rec in read_records(path, cfg):
        yield InputRecord(rec.id, rec.tokens, rec.fields.get("label") or parse_label(f"{rec.id} {rec.description}"))


@dataclass
class InputColumns:
    """Records as three parallel lists (what evaluation indexes by position)."""

    ids: list[str] = field(default_factory=list)
    seqs: list[np.ndarray] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)


def read_columns(
    path: str | Path, reader_cfg: ReaderConfig | None = None, splits: Sequence[str] = ("train", "val")
) -> InputColumns:
    out = InputColumns()
    for rec in iter_input(path, reader_cfg, splits):
        out.ids.append(rec.id)
        out.seqs.append(rec.tokens)
        out.labels.append(rec.label)
    return out
