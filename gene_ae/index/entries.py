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
type and size and the spans are checked on open, the ids' and labels' text when first read (a search reads only its
hits' shards; `gene-ae verify` all), and a fault is a one-line error naming the record.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
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


class Texts(Sequence[str]):
    """Texts held as one UTF-8 blob, each followed by "\\n", a text decoded only when asked; the blob itself read
    (and checked) on first use where `load` is given. Why: a 10^6-record index's ids as a list of str took most of
    a quarter second of every search's open, and a search reports a few tens of them."""

    def __init__(self, blob: bytes | None, count: int, load: Callable[[], bytes] | None = None):
        self._blob, self._count, self._load, self._ends_at = blob, count, load, None

    @classmethod
    def of(cls, texts: Sequence[str]) -> Texts:
        texts = list(texts)
        return cls("".join(t + "\n" for t in texts).encode(), len(texts))

    @property
    def blob(self) -> bytes:
        if self._blob is None:  # two threads asking first both read it: the same bytes
            self._blob = self._load()
        return self._blob

    @property
    def _ends(self) -> np.ndarray:
        """Each text's end (its "\\n"), found on the first lookup."""
        if self._ends_at is None:
            self._ends_at = np.flatnonzero(np.frombuffer(self.blob, np.uint8) == 10)
        return self._ends_at

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        j = _position(j, self._count)
        ends = self._ends
        return self.blob[int(ends[j - 1]) + 1 if j else 0 : int(ends[j])].decode()

    def __iter__(self) -> Iterator[str]:
        return iter(self.blob.decode().split("\n")[:-1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


class JoinedTexts(Texts):
    """Several Texts as one sequence (a collection's shards): a lookup reads only the part it falls in."""

    def __init__(self, parts: Sequence[Texts]):
        super().__init__(None, sum(len(p) for p in parts), lambda: b"".join(p.blob for p in parts))
        self.parts, self.starts = list(parts), np.cumsum([0, *(len(p) for p in parts)])

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        j = _position(j, self._count)
        part = int(np.searchsorted(self.starts, j, side="right")) - 1
        return self.parts[part][j - int(self.starts[part])]

    def __iter__(self) -> Iterator[str]:
        return (t for p in self.parts for t in p)

    def parts_of(self, positions: np.ndarray) -> list[Texts]:
        """The parts holding these positions."""
        held = np.searchsorted(self.starts, np.asarray(positions, dtype=np.int64), side="right") - 1
        return [self.parts[p] for p in sorted(set(held.tolist()))]  # not np.unique: it imports numpy.ma (16 ms)


def _position(j, count: int) -> int:
    j = int(j)
    if not -count <= j < count:
        raise IndexError(f"text {j} of {count}")
    return j % count


class Entries(Sequence[Entry]):
    """Every record of an index, in index order; `entries[j]` makes record j's Entry when asked. The ids and labels
    are Texts (decoded as asked), `has_label` marks the records that have a label."""

    def __init__(self, ids: Sequence[str], labels: Sequence[str | None], length: np.ndarray, start: np.ndarray,
                 end: np.ndarray, has_label: np.ndarray | None = None):  # fmt: skip
        """`labels` with None for a record without one, or (Texts) with `has_label` beside it."""
        self.ids = ids if isinstance(ids, Texts) else Texts.of(ids)
        if has_label is None:
            has_label = np.array([x is not None for x in labels], dtype=bool).reshape(-1)
            labels = [x or "" for x in labels]
        self.has_label = np.asarray(has_label, dtype=bool)
        self._labels = labels if isinstance(labels, Texts) else Texts.of(labels)
        self.length, self.start, self.end = (np.asarray(a, dtype=np.int64) for a in (length, start, end))

    @classmethod
    def of(cls, rows: Sequence[Entry]) -> Entries:
        ints = np.array([(e.length, e.start, e.end) for e in rows], dtype=np.int64).reshape(-1, 3)
        return cls([e.id for e in rows], [e.label for e in rows], ints[:, 0], ints[:, 1], ints[:, 2])

    @classmethod
    def concat(cls, parts: Sequence[Entries]) -> Entries:
        """The records of several shards in order (global positions)."""
        ints = [np.concatenate([getattr(p, k) for p in parts] or [np.zeros(0, np.int64)]) for k in _INTS]
        has = np.concatenate([p.has_label for p in parts] or [np.zeros(0, bool)])
        return cls(JoinedTexts([p.ids for p in parts]), JoinedTexts([p._labels for p in parts]), *ints, has)

    @property
    def labels(self) -> list[str | None]:
        """Every record's label (None where it has none), decoded."""
        return [x if h else None for x, h in zip(self._labels, self.has_label.tolist())]

    def prefetch(self, records: Sequence[int], threads: int = 2) -> None:
        """The ids (and labels, where these records have any) of the shards holding these records read now, `threads`
        shards at once, rather than one after another as the hits are written (~12 ms a 90,000-record shard)."""
        from gene_ae.core.threads import in_threads

        records = np.asarray(records, dtype=np.int64)
        texts = [self.ids] + ([self._labels] if records.size and self.has_label[records].any() else [])
        parts = [p for t in texts for p in (t.parts_of(records) if isinstance(t, JoinedTexts) else [t])]
        in_threads(lambda p: p.blob, parts, threads)

    def check(self) -> None:
        """The ids and labels read, and checked, now rather than when first used (`gene-ae verify`)."""
        self.ids.blob, self._labels.blob  # noqa: B018

    def label(self, j: int) -> str | None:
        return self._labels[j] if self.has_label[j] else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        return Entry(id=self.ids[j], length=int(self.length[j]), label=self.label(j), start=int(self.start[j]),
                     end=int(self.end[j]))  # fmt: skip

    def __iter__(self) -> Iterator[Entry]:
        return (self[j] for j in range(len(self)))

    def save(self, directory: Path) -> None:
        np.savez_compressed(  # the ids are text (SILVA's 0.89 MB a shard zip to 0.21), the columns mostly alike
            directory / FILE, ids=_blob(self.ids), labels=_blob(self._labels), length=narrow(self.length),
            start=narrow(self.start), end=narrow(self.end), has_label=self.has_label,
        )  # fmt: skip

    @classmethod
    def load(cls, directory: Path, records: int, data: bytes | None = None) -> Entries:
        """entries.npz of an index whose index.json lists `records` records (`data`: the file's bytes, read and
        checked against its digest already), checked; ValueError naming the file and the first fault. The ids and
        labels are read and checked when first used (a search reports a few), the numbers now."""
        path = directory / FILE

        def bad(what: str) -> ValueError:
            return ValueError(f"{path}: damaged record list ({what}); rebuild the index")

        def members(*names: str) -> tuple[dict[str, np.ndarray], set[str]]:
            """(these columns, every column's name) of the file, each read (unzipped) only when asked for here."""
            try:
                with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as z:
                    return {k: z[k] for k in names}, set(z.files)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None

        cols, held = members("has_label", *_INTS)
        missing = {"ids", "labels"} - held
        if missing:
            raise bad(f"no {sorted(missing)[0]!r} column")
        if cols["has_label"].dtype != np.bool_ or cols["has_label"].ndim != 1:
            raise bad(f"'has_label' is {cols['has_label'].dtype} of {cols['has_label'].ndim} dimensions")
        try:  # the integer columns: any type narrow writes, one dimension
            cols.update({k: wide(cols[k], k) for k in _INTS})
        except ValueError as exc:
            raise bad(str(exc)) from None
        if any(cols[k].size != records for k in ("has_label", *_INTS)):
            raise bad(f"columns of {[cols[k].size for k in ('has_label', *_INTS)]} values for {records} records")

        def texts(name: str, what: str) -> Callable[[], bytes]:
            def load() -> bytes:
                blob = members(name)[0][name]
                if blob.dtype != np.uint8 or blob.ndim != 1:
                    raise bad(f"{name!r} is {blob.dtype} of {blob.ndim} dimensions")
                return _texts(blob, records, what, bad)

            return load

        ids = Texts(None, records, texts("ids", "id"))
        length, start, end = (cols[k] for k in _INTS)
        wrong = np.flatnonzero((start < 0) | (start > end) | (end > length))
        if wrong.size:
            j = int(wrong[0])
            raise bad(f"record {j} ({ids[j]!r}): length {length[j]}, span {start[j]}-{end[j]}")
        return cls(ids, Texts(None, records, texts("labels", "label")), length, start, end, cols["has_label"])


def _blob(texts: Texts) -> np.ndarray:
    return np.frombuffer(texts.blob, dtype=np.uint8)


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"


def _texts(blob: np.ndarray, records: int, what: str, bad) -> bytes:
    """The blob of `records` texts, checked: UTF-8, a "\\n" after each, no control characters, no empty id. The
    common case (printable ASCII) in a few passes over the bytes in C; any other byte sends it through the full
    check."""
    raw = blob.tobytes()
    count = raw.count(b"\n")
    if count != records or raw and not raw.endswith(b"\n"):
        raise bad(f"{count} {what}s for {records} records" + ("" if count != records else ", the last unended"))
    if what == "id" and (raw.startswith(b"\n") or b"\n\n" in raw):
        raise bad(f"record {raw.decode(errors='replace').split(chr(10)).index('')}: an empty id")
    if raw.isascii() and not raw.translate(None, _PRINTABLE_ASCII):
        return raw
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise bad(f"the {what}s are not UTF-8 ({exc.reason})") from None
    parts = text.split("\n")[:-1]
    if not "".join(parts).isprintable():  # else some part may hold one (or only a non-ASCII space)
        j = next((j for j, t in enumerate(parts) if control_char(t) is not None), None)
        if j is not None:
            raise bad(f"record {j}: control character {control_char(parts[j])!r} in the {what}")
    return raw
