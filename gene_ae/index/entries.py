"""The records an index holds, as columns (entries.npz): each record's id, length, label and vector span.

Why columns: with one JSON object a record in index.json, opening a 10^6-record index took 6 s of each
search, most of it checking the objects one by one; as arrays the same checks are a few numpy passes.

    ids         uint8   the ids' UTF-8, each followed by "\\n" (an id holds no control character)
    labels      uint8   the labels the same way ("" where has_label is False)
    has_label   bool
    length      int     bases
    start, end  int     the span the record's vector covers (0-based, end exclusive)

(the integers in the fewest bytes that hold them, gene_ae/index/compact.py; int64 once read)

Read back, the file is untrusted (its sha256 is checked first, by gene_ae/index/directory.py): every column's
type and size, the spans, and the text are checked, and a fault is a one-line error naming the record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gene_ae.index.compact import narrow, wide
from shard_tools.text import control_char

FILE = "entries.npz"
_INTS = ("length", "start", "end")


@dataclass(kw_only=True)
class Entry:
    """One indexed record (start/end: the span its vector covers, 0-based, end exclusive)."""

    id: str
    length: int
    label: str | None = None
    start: int = 0
    end: int = 0


class Entries(Sequence[Entry]):
    """Every record of an index, in index order; `entries[j]` makes record j's Entry when asked."""

    def __init__(self, ids: list[str], labels: list[str | None], length: np.ndarray, start: np.ndarray,
                 end: np.ndarray):  # fmt: skip
        self.ids, self.labels = ids, labels
        self.length, self.start, self.end = (np.asarray(a, dtype=np.int64) for a in (length, start, end))

    @classmethod
    def of(cls, rows: Sequence[Entry]) -> Entries:
        ints = np.array([(e.length, e.start, e.end) for e in rows], dtype=np.int64).reshape(-1, 3)
        return cls([e.id for e in rows], [e.label for e in rows], ints[:, 0], ints[:, 1], ints[:, 2])

    @classmethod
    def concat(cls, parts: Sequence[Entries]) -> Entries:
        """The records of several shards in order (global positions)."""
        ids = [i for p in parts for i in p.ids]
        labels = [x for p in parts for x in p.labels]
        ints = [np.concatenate([getattr(p, k) for p in parts] or [np.zeros(0, np.int64)]) for k in _INTS]
        return cls(ids, labels, *ints)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        return Entry(id=self.ids[j], length=int(self.length[j]), label=self.labels[j], start=int(self.start[j]),
                     end=int(self.end[j]))  # fmt: skip

    def __iter__(self) -> Iterator[Entry]:
        return (self[j] for j in range(len(self)))

    def save(self, directory: Path) -> None:
        labels = [x or "" for x in self.labels]
        np.savez_compressed(  # the ids are text (SILVA's 0.89 MB a shard zip to 0.21), the columns mostly alike
            directory / FILE, ids=_blob(self.ids), labels=_blob(labels), length=narrow(self.length),
            start=narrow(self.start), end=narrow(self.end),
            has_label=np.array([x is not None for x in self.labels], dtype=bool),
        )  # fmt: skip

    @classmethod
    def load(cls, directory: Path, records: int) -> Entries:
        """entries.npz of an index whose index.json lists `records` records, checked; ValueError naming the
        file and the first fault."""
        path = directory / FILE

        def bad(what: str) -> ValueError:
            return ValueError(f"{path}: damaged record list ({what}); rebuild the index")

        try:
            with np.load(path, allow_pickle=False) as z:
                cols = {k: z[k] for k in ("ids", "labels", "has_label", *_INTS)}
        except (OSError, ValueError, KeyError) as exc:
            raise bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        for k, dtype in (("ids", np.uint8), ("labels", np.uint8), ("has_label", np.bool_)):
            if cols[k].dtype != dtype or cols[k].ndim != 1:
                raise bad(f"{k!r} is {cols[k].dtype} of {cols[k].ndim} dimensions")
        try:  # the integer columns: any type narrow writes, one dimension
            cols.update({k: wide(cols[k], k) for k in _INTS})
        except ValueError as exc:
            raise bad(str(exc)) from None
        ids, labels = _texts(cols["ids"], records, "id", bad), _texts(cols["labels"], records, "label", bad)
        if any(cols[k].size != records for k in ("has_label", *_INTS)):
            raise bad(f"columns of {[cols[k].size for k in ('has_label', *_INTS)]} values for {records} records")
        length, start, end = (cols[k] for k in _INTS)
        wrong = np.flatnonzero((start < 0) | (start > end) | (end > length))
        if wrong.size:
            j = int(wrong[0])
            raise bad(f"record {j} ({ids[j]!r}): length {length[j]}, span {start[j]}-{end[j]}")
        if not all(ids):
            raise bad(f"record {ids.index('')}: an empty id")
        has = cols["has_label"]
        if has.all() or not has.any():  # the common cases without a loop over every record (12 ms at 10^5)
            return cls(ids, labels if has.all() else [None] * records, length, start, end)
        return cls(ids, [x if h else None for x, h in zip(labels, has.tolist())], length, start, end)


def _blob(texts: Sequence[str]) -> np.ndarray:
    return np.frombuffer("".join(t + "\n" for t in texts).encode(), dtype=np.uint8)


def _texts(blob: np.ndarray, records: int, what: str, bad) -> list[str]:
    """The `records` texts of a blob, each checked for control characters (fast path: all printable)."""
    try:
        text = blob.tobytes().decode()
    except UnicodeDecodeError as exc:
        raise bad(f"the {what}s are not UTF-8 ({exc.reason})") from None
    parts = text.split("\n")
    if len(parts) != records + 1 or parts[-1]:
        raise bad(f"{len(parts) - 1} {what}s for {records} records")
    parts.pop()
    if not "".join(parts).isprintable():  # else some part may hold one (or only a non-ASCII space)
        j = next((j for j, t in enumerate(parts) if control_char(t) is not None), None)
        if j is not None:
            raise bad(f"record {j}: control character {control_char(parts[j])!r} in the {what}")
    return parts
