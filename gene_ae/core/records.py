"""The one reader of a user's input into records: a sequence file, '-' (stdin) or a shard folder.

Every command (embed, search, eval, reconstruct) reads its inputs here, so ids and labels come out the same
way everywhere: a table's label column or the shards' metadata first, else the header (`parse_label`).
Files and stdin go through shard_tools.inputs (stdin as a stream, nothing copied to a temporary file);
shard records are checked like file records: an id or label with a control character is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gene_ae.core.labels import parse_label
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.record import STDIN, display_name
from shard_tools.text import control_char


@dataclass
class InputRecord:
    id: str
    tokens: np.ndarray
    label: str | None = None
    features: dict[str, float | str | None] = field(default_factory=dict)  # the declared features, typed


def iter_input(
    path: str | Path, reader_cfg: ReaderConfig | None = None, splits: Sequence[str] = ("train", "val")
) -> Iterator[InputRecord]:
    """Records of a file, '-' (stdin, read as it arrives, as shard-fasta reads it) or a shard folder (its
    `splits`, in that order)."""
    if str(path) != STDIN and Path(path).is_dir():
        yield from _from_shards(path, splits)
        return
    yield from _from_file(path, reader_cfg or ReaderConfig())


def _from_shards(path: str | Path, splits: Sequence[str]) -> Iterator[InputRecord]:
    from shard_tools.reader import load_manifest, read_shards

    kinds = load_manifest(path)["features"]  # {} for shards written without --feature-column
    for split in splits:
        for rid, tokens, meta in read_shards(path, split):
            label = meta.get("label") or parse_label(f"{rid} {meta.get('desc', '')}")
            rec = InputRecord(rid, tokens, label, _shard_features(path, split, rid, kinds, meta.get("features")))
            for what, text in (("id", rid), ("label", rec.label or "")):
                if (bad := control_char(str(text))) is not None:
                    raise ValueError(
                        f"{display_name(path)}: split {split!r}: record {rid!r}: control character {bad!r} in "
                        f"the {what}; refused (see docs/INPUTS.md)"
                    )
            yield rec


def _shard_features(path: str | Path, split: str, rid: str, kinds: dict[str, str], stored: object) -> dict:
    """A shard record's features: the manifest's names only (a table column that happens to be called
    "features" is not one), each a value of its declared kind or None; anything else is a one-line error."""
    if not kinds:
        return {}
    where = f"{display_name(path)}: split {split!r}: record {rid!r}"
    if not isinstance(stored, dict):
        raise ValueError(f"{where}: no 'features' in its metadata, though the manifest declares {sorted(kinds)}")
    out: dict[str, float | str | None] = {}
    for name, kind in kinds.items():
        value = stored.get(name)
        want = str if kind == "categorical" else (int, float)
        if value is not None and (not isinstance(value, want) or isinstance(value, bool)):
            raise ValueError(f"{where}: feature {name!r} is declared {kind} but holds {str(value)[:60]!r}")
        out[name] = float(value) if kind == "numeric" and value is not None else value
    return out


def _from_file(path: str | Path, cfg: ReaderConfig) -> Iterator[InputRecord]:
    for rec in read_records(path, cfg):
        label = rec.fields.get("label") or parse_label(f"{rec.id} {rec.description}")
        yield InputRecord(rec.id, rec.tokens, label, rec.features)


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
