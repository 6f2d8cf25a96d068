"""The records an index holds, as columns (entries.npz): each record's id, length, label and vector span.

Why columns: with one JSON object a record in index.json, opening a 10^6-record index took 6 s of each
search, most of it checking the objects one by one; as arrays the same checks are a few numpy passes.

    ids_z       uint8   the ids' UTF-8, each followed by "\\n" (an id holds no control character), in zstd blocks of
                        TEXT_BLOCK ids one after another; ids_at: where each block ends (format 9; before it `ids`,
                        the whole text zipped, still read)
    labels_z    uint8   the labels the same way ("" where has_label is False), labels_at their blocks' ends
    has_label   bool
    length      int     bases
    start, end  int     the span the record's vector covers (0-based, end exclusive)

(the integers in the fewest bytes that hold them, gene_ae/index/compact.py; int64 once read)

Read back, the file is untrusted (its sha256 is checked first, by gene_ae/index/directory.py): every column's
type and size and the spans are checked on open, the ids' and labels' text when first read (a search reads only its
hits' blocks; `gene-ae verify` all), and a fault is a one-line error naming the record.

Why blocks: a search reports a few tens of ids, and decoding a 90,000-record shard's whole id column for one of them
took 8 ms a shard (a one-query search of a 10^6-gene index hit 7 of its 13 shards: 0.06 s of 0.68); a block is
decoded in a few microseconds. zstd at level 19 packs SILVA's ids smaller in 1,024-id blocks (0.20 MB a 90,000-id
shard) than zip did whole (0.31 MB).
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
TEXT_BLOCK = 1024  # ids (labels) a zstd block holds: about 13 KB of SILVA's ids, decoded in microseconds
_LEVEL = 19
_BLOCK_BYTES = 1 << 28  # a block claiming more text than this is damaged (1,024 ids of 256 KiB each)


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

    def warm(self, positions: np.ndarray) -> None:  # noqa: ARG002
        """The text of these positions read now (here: the whole blob)."""
        self.blob  # noqa: B018

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

    def parts_of(self, positions: np.ndarray) -> list[tuple[Texts, np.ndarray]]:
        """The parts holding these positions, each with its positions in it."""
        positions = np.asarray(positions, dtype=np.int64)
        held = np.searchsorted(self.starts, positions, side="right") - 1
        return [(self.parts[p], positions[held == p] - self.starts[p])
                for p in sorted(set(held.tolist()))]  # fmt: skip  # not np.unique: it imports numpy.ma (16 ms)


class BlockTexts(Texts):
    """Texts stored as zstd blocks of TEXT_BLOCK texts (`load` gives the blocks' bytes one after another and where
    each ends): a lookup decodes and checks its block alone (`check(frame, count, first)` gives the checked text of a
    block's `count` texts, the first numbered `first`); the whole blob only when asked (iteration, `gene-ae verify`)."""

    def __init__(self, count: int, load: Callable[[], tuple[np.ndarray, np.ndarray]],
                 check: Callable[[np.ndarray, int, int], bytes]):  # fmt: skip
        super().__init__(None, count, lambda: b"".join(self._block(b)[0] for b in range(self._blocks)))
        self._read, self._check, self._decoded, self._held = load, check, {}, None

    @property
    def _blocks(self) -> int:
        return -(-self._count // TEXT_BLOCK)

    @property
    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        """The blocks' bytes and ends, read on first use (not a cached_property: Python 3.11's holds one lock for
        every instance, which would read the shards' blocks one at a time in `Entries.prefetch`)."""
        if self._held is None:  # two threads asking first both read it: the same arrays
            self._held = self._read()
        return self._held

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice) or self._blob is not None:
            return super().__getitem__(j)
        j = _position(j, self._count)
        raw, ends = self._block(j // TEXT_BLOCK)
        i = j % TEXT_BLOCK
        return raw[int(ends[i - 1]) + 1 if i else 0 : int(ends[i])].decode()

    def warm(self, positions: np.ndarray) -> None:
        for b in sorted(set((np.asarray(positions, dtype=np.int64) // TEXT_BLOCK).tolist())):
            self._block(b)

    def _block(self, b: int) -> tuple[bytes, np.ndarray]:
        """Block b's text, checked, and where each of its texts ends; decoded once (two threads asking first both
        decode it: the same bytes)."""
        got = self._decoded.get(b)
        if got is None:
            stream, at = self._stored
            first = b * TEXT_BLOCK
            frame = stream[int(at[b - 1]) if b else 0 : int(at[b])]
            raw = self._check(frame, min(TEXT_BLOCK, self._count - first), first)
            got = self._decoded[b] = (raw, np.flatnonzero(np.frombuffer(raw, np.uint8) == 10))
        return got


def _unzstd(frame: np.ndarray) -> bytes:
    """A zstd frame's content; ValueError when it is not a whole, checksummed frame of at most _BLOCK_BYTES."""
    import zstandard

    data = frame.tobytes()
    try:
        size = zstandard.frame_content_size(data)
        if not 0 <= size <= _BLOCK_BYTES:
            raise ValueError(f"a block of {size} bytes")
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else "damaged") from None


def text_blocks(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(the zstd blocks' bytes one after another, where each ends) of texts each ended by "\\n", TEXT_BLOCK a block:
    the `NAME_z` and `NAME_at` columns of entries.npz."""
    import zstandard

    cuts = np.flatnonzero(np.frombuffer(blob, np.uint8) == 10)[TEXT_BLOCK - 1 :: TEXT_BLOCK] + 1
    bounds = [0, *cuts.tolist()] + ([len(blob)] if len(blob) and (not cuts.size or cuts[-1] != len(blob)) else [])
    z = zstandard.ZstdCompressor(level=_LEVEL, write_checksum=True)
    frames = [z.compress(blob[a:b]) for a, b in zip(bounds, bounds[1:])]
    return np.frombuffer(b"".join(frames), np.uint8), narrow(np.cumsum([len(f) for f in frames], dtype=np.int64))


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
        parts = [p for t in texts for p in (t.parts_of(records) if isinstance(t, JoinedTexts) else [(t, records)])]
        in_threads(lambda part: part[0].warm(part[1]), parts, threads)

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
        (ids_z, ids_at), (labels_z, labels_at) = text_blocks(self.ids.blob), text_blocks(self._labels.blob)
        np.savez_compressed(  # the columns mostly alike: zipped
            directory / FILE, ids_z=ids_z, ids_at=ids_at, labels_z=labels_z, labels_at=labels_at,
            length=narrow(self.length), start=narrow(self.start), end=narrow(self.end), has_label=self.has_label,
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
        missing = [n for n in ("ids", "labels") if n not in held and f"{n}_z" not in held]
        if missing:
            raise bad(f"no {missing[0]!r} column")
        if cols["has_label"].dtype != np.bool_ or cols["has_label"].ndim != 1:
            raise bad(f"'has_label' is {cols['has_label'].dtype} of {cols['has_label'].ndim} dimensions")
        try:  # the integer columns: any type narrow writes, one dimension
            cols.update({k: wide(cols[k], k) for k in _INTS})
        except ValueError as exc:
            raise bad(str(exc)) from None
        if any(cols[k].size != records for k in ("has_label", *_INTS)):
            raise bad(f"columns of {[cols[k].size for k in ('has_label', *_INTS)]} values for {records} records")

        def texts(name: str, what: str) -> Texts:
            if f"{name}_z" not in held:  # format 8 and before: the whole text as one column

                def load() -> bytes:
                    return _texts(_bytes(members(name)[0][name], name), records, what, bad)

                return Texts(None, records, load)

            def blocks() -> tuple[np.ndarray, np.ndarray]:
                got = members(f"{name}_z", f"{name}_at")[0]
                stream = _bytes(got[f"{name}_z"], f"{name}_z")
                try:
                    at = wide(got[f"{name}_at"], f"{name}_at")
                except ValueError as exc:
                    raise bad(str(exc)) from None
                if at.size != -(-records // TEXT_BLOCK) or (at.size and (at[0] < 0 or (np.diff(at) < 0).any()
                                                                         or at[-1] != stream.size)):  # fmt: skip
                    raise bad(f"{at.size} {what} blocks ending within {stream.size} bytes for {records} records")
                return stream, at

            def check(frame: np.ndarray, count: int, first: int) -> bytes:
                try:
                    raw = _unzstd(frame)
                except ValueError as exc:
                    raise bad(f"the {what}s of records {first}-{first + count - 1}: not a zstd block ({exc})") from None
                return _texts(np.frombuffer(raw, np.uint8), count, what, bad, first)

            return BlockTexts(records, blocks, check)

        def _bytes(blob: np.ndarray, name: str) -> np.ndarray:
            if blob.dtype != np.uint8 or blob.ndim != 1:
                raise bad(f"{name!r} is {blob.dtype} of {blob.ndim} dimensions")
            return blob

        ids = texts("ids", "id")
        length, start, end = (cols[k] for k in _INTS)
        wrong = np.flatnonzero((start < 0) | (start > end) | (end > length))
        if wrong.size:
            j = int(wrong[0])
            raise bad(f"record {j} ({ids[j]!r}): length {length[j]}, span {start[j]}-{end[j]}")
        return cls(ids, texts("labels", "label"), length, start, end, cols["has_label"])


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"


def _texts(blob: np.ndarray, records: int, what: str, bad, first: int = 0) -> bytes:
    """The blob of `records` texts, checked: UTF-8, a "\\n" after each, no control characters, no empty id; the
    first numbered `first` (a block's). The common case (printable ASCII) in a few passes over the bytes in C; any
    other byte sends it through the full check."""
    raw = blob.tobytes()
    count = raw.count(b"\n")
    if count != records or raw and not raw.endswith(b"\n"):
        held = f" (records {first}-{first + records - 1})" if first else ""
        raise bad(f"{count} {what}s for {records} records{held}" + ("" if count != records else ", the last unended"))
    if what == "id" and (raw.startswith(b"\n") or b"\n\n" in raw):
        raise bad(f"record {first + raw.decode(errors='replace').split(chr(10)).index('')}: an empty id")
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
            raise bad(f"record {first + j}: control character {control_char(parts[j])!r} in the {what}")
    return raw
