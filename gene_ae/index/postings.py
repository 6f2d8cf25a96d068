"""The k-mer postings' one format and the one loop over it (postings.c, compiled at install, called by ctypes).

A k-mer's postings are its segments as nibble varints of their gaps, or (an index that stores its segments in an
order of its own, `Postings.order`) of tokens that also write a run of neighbouring segments as one (postings.c says
both layouts); `stream` is the uint8 array of every row's nibbles and `ptr[r]` row r's first nibble. Why C: a 16S
query reads about 9 million postings of a 204,065-gene index, and numpy's decode-then-bincount spent 90 ms on them;
one pass that decodes and adds costs a few ns a posting, and a varint of 3-bit groups stores 40 % of the gaps (1,
between neighbouring records) in half a byte.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

from gene_ae.core.native import I32, I64, P, load
from gene_ae.core.native import at as _at
from gene_ae.index.compact import LONG, checked_lengths, wide

GATHER_BYTES = 1 << 26  # a read of more rows than this goes through the map (the rows of a query: a few MB)
READ_GAP = 4096  # rows at most this many bytes apart are read as one (a read costs about as much as copying 4 KB)
ABI = 7  # postings.c's postings_abi(): the library's arguments and layout are the ones this module calls


@cache
def _lib() -> ctypes.CDLL:
    """postings.c as built by `pip install` (setup.py) into this package: loaded once per process, refused when it
    was built from another version of postings.c."""
    lib = load("gene_ae.index._postings", "gene_ae/index/postings.c", {
        "postings_abi": ((), I32),
        "postings_encode": ((P, I64, P, P, I32, P, P, I32), I64),
        "postings_accumulate": ((P, P, P, P, I64, P, I64, I64, P, I32), I64),
        "postings_decode": ((P, P, P, I64, P, I64, I64, I64, P, I32), I64),
        "postings_count": ((P, P, P, I64, I64, I32), I64),
        "postings_read": ((I32, I64, P, P, I64, P), I64),
        "postings_pointers": ((P, I64, P, I32, I64, P), I64),
        "postings_blocks": ((P, I64, P, I32, I64, I32, P, P), I64),
        "postings_spans": ((P, I64, P, I32, I64, P, P, I32, P, I64, P, P), I64),
        "postings_transpose": ((P, I64, P, P, P, I64, P, I32, P, P, P), I64),
    })  # fmt: skip
    if lib.postings_abi() != ABI:
        raise ImportError(f"gene_ae.index._postings was built from another postings.c (version {lib.postings_abi()}, "
                          f"this gene-ae calls version {ABI}): run `pip install -e .` to rebuild it")  # fmt: skip
    return lib


BLOCK_SHIFT = 8  # RowLengths: a row's pointer summed from its block's start, at most 255 rows before it
_WIDTHS = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.uint32): 4, np.dtype(np.int64): 8}


@dataclass
class RowLengths:
    """Row pointers as kmers.npz stores them: each row's length (compact.py's layout: a byte a row, LONG where the
    length is the next of `long`, kept in its narrow type), and at the start of every block of 2^BLOCK_SHIFT rows
    the row pointer (`at`) and the long rows before it (`used`). Why: a search reads a few thousand of a shard's
    2^20 rows, and making every row's pointer wrote 8 MB a shard on every open (4 ms a shard, 13 shards at 10^6
    genes, where half the rows are long); a row's pointer is at most 255 lengths from its block's start."""

    short: np.ndarray  # uint8 [rows]
    long: np.ndarray  # uint8, uint16, uint32 or int64
    at: np.ndarray  # int64 [blocks + 1]: the last, the last row's end
    used: np.ndarray  # int64 [blocks + 1]

    @classmethod
    def of(cls, short: np.ndarray, long: np.ndarray, at: np.ndarray | None = None,
           used: np.ndarray | None = None) -> RowLengths:  # fmt: skip
        """From compact.split_lengths' arrays as stored, and the blocks' starts where stored (`blocks` wrote them;
        else found in a pass over the rows); ValueError where they are not that layout (compact.py checks them),
        more rows are marked long than `long` holds, or the blocks' starts are not theirs."""
        short, long = checked_lengths(short, long)
        if at is None or used is None:
            return cls(short, long, *cls.blocks(short, long))
        at, used = wide(at, "row blocks"), wide(used, "row blocks' long rows")
        ok = at.size == used.size == _blocks(short.size) + 1 and at[0] == used[0] == 0 and used[-1] == long.size
        if not ok or (np.diff(at) < 0).any() or (np.diff(used) < 0).any():
            raise ValueError(f"row blocks of {at.size} and {used.size} starts for {short.size} rows")
        marked = np.count_nonzero(short == LONG)  # the rows' sum against the last end (~1 ms a shard, 1/3 of a pass)
        total = int(short.sum(dtype=np.int64)) - LONG * marked + int(long.sum(dtype=np.int64))
        if marked != long.size or total != at[-1]:
            raise ValueError(f"rows of {total} nibbles ({marked} marked long, {long.size} listed), blocks to {at[-1]}")
        return cls(short, long, at, used)

    @staticmethod
    def blocks(short: np.ndarray, long: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(at, used) of every block of these rows, in one compiled pass."""
        at, used = np.empty(_blocks(short.size) + 1, np.int64), np.empty(_blocks(short.size) + 1, np.int64)
        got = _lib().postings_blocks(_at(short), short.size, _at(long), _width(long), long.size, BLOCK_SHIFT,
                                     _at(at), _at(used))  # fmt: skip
        if got != long.size:
            raise _marked_long(short, long)
        return at, used

    def spans(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first nibble, end) of each of these rows; ValueError where a row is outside the table or its block's
        long rows pass the list (a damaged table: its file's sha256, checked on open, makes that unlikely)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        lo, hi = np.empty(rows.size, np.int64), np.empty(rows.size, np.int64)
        if _lib().postings_spans(_at(self.short), self.short.size, _at(self.long), _width(self.long), self.long.size,
                                 _at(self.at), _at(self.used), BLOCK_SHIFT, _at(rows), rows.size, _at(lo),
                                 _at(hi)) < 0:  # fmt: skip
            raise ValueError(f"k-mer rows outside 0..{self.short.size}, or a damaged row table")
        return lo, hi

    def pointers(self) -> np.ndarray:
        """Every row's pointer, then the last row's end (int64, rows + 1)."""
        ptr, used = joined_lengths(self.short, self.long)
        if used != self.long.size:
            raise _marked_long(self.short, self.long)
        return ptr


def _blocks(rows: int) -> int:
    """The blocks of 2^BLOCK_SHIFT rows that `rows` rows take."""
    return (rows + (1 << BLOCK_SHIFT) - 1) >> BLOCK_SHIFT


def _marked_long(short: np.ndarray, long: np.ndarray) -> ValueError:
    return ValueError(f"{long.size} long rows for {np.count_nonzero(short == LONG)} rows marked long")


def _width(long: np.ndarray) -> int:
    """The C calls' width of a long-row list: compact.narrow's types (int32 never holds lengths, which are >= 0)."""
    return _WIDTHS[long.dtype]


@dataclass
class Postings:
    """Every k-mer row's postings: `stream` (uint8, memory-mapped when loaded); `pointers`: the row pointers (int64,
    rows + 1), or the rows' lengths they are found from (RowLengths, as a loaded index holds them). `order` (int32
    [n_segments], or None): the segments stored in another order (postings.c's runs: relatives made neighbours so
    that most gaps are 1), order[i] the segment at stored position i; scores and decoded segments come back in the
    index's own segment order either way."""

    stream: np.ndarray
    pointers: np.ndarray | RowLengths
    n_segments: int
    order: np.ndarray | None = None

    def __post_init__(self) -> None:
        """A stream mapped from a file is also opened for reading (`_gather`), right after it was mapped: the
        descriptor keeps the mapped file's bytes even where the index is replaced on disk meanwhile."""
        self._fd = -1
        if isinstance(self.stream, np.memmap) and self.stream.filename is not None:
            self._fd = os.open(self.stream.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            weakref.finalize(self, os.close, self._fd)

    def __getstate__(self) -> dict:
        """Pickled (a Ray task's result, another process) without the descriptor, whose number means nothing there:
        the copy reads the stream it carries."""
        return {**self.__dict__, "_fd": -1}

    @classmethod
    def encode(
        cls, indptr: np.ndarray, indices: np.ndarray, counts: np.ndarray, n_segments: int,
        order: np.ndarray | None = None, nibbles: int | None = None,
    ) -> Postings:  # fmt: skip
        """From CSR rows (k-mers) of increasing segment indices and their counts; with `order`, the indices are
        stored positions (order[i]: the segment at position i) and the rows are written with runs. `nibbles`: what
        `size` said of these rows in this layout, when the caller asked it already."""
        if order is not None:
            order = np.ascontiguousarray(order, dtype=np.int32)
            if order.size != n_segments or not np.array_equal(np.sort(order), np.arange(n_segments)):
                raise ValueError(f"postings: the order of {n_segments} segments is not a permutation of them")
        indptr, indices, counts = _rows(indptr, indices, counts)
        runs = int(order is not None)
        ptr = np.empty(indptr.size, np.int64)
        if nibbles is None:
            nibbles = cls.size(indptr, indices, counts, bool(runs))
        stream = np.zeros((nibbles + 1) // 2, np.uint8)
        wrote = _lib().postings_encode(_at(indptr), indptr.size - 1, _at(indices), _at(counts), _wide(counts),
                                       _at(stream), _at(ptr), runs)  # fmt: skip
        if wrote != nibbles:
            raise ValueError(f"postings: {wrote} nibbles written where {nibbles} were sized")
        return cls(stream, ptr, n_segments, order)

    @staticmethod
    def size(indptr: np.ndarray, indices: np.ndarray, counts: np.ndarray, runs: bool = False) -> int:
        """The nibbles encode() would write for these rows (plain gaps, or with runs), nothing written. Rows are
        sized a block of about 2^24 postings at a time: the index builder asks while the segments' matrix and its
        transpose are both held, and postings.c's types (indices as int32) would copy them whole."""
        total, a, rows = 0, 0, indptr.size - 1
        while a < rows:
            b = max(int(np.searchsorted(indptr, indptr[a] + (1 << 24), "right")) - 1, a + 1)
            lo, hi = int(indptr[a]), int(indptr[b])
            ptr, idx, n = _rows(indptr[a : b + 1] - lo, indices[lo:hi], counts[lo:hi])
            out = np.empty(b - a + 1, np.int64)
            nibbles = _lib().postings_encode(_at(ptr), b - a, _at(idx), _at(n), _wide(n), None, _at(out), int(runs))
            if nibbles < 0:
                raise ValueError("postings: a row's segments do not increase")
            total, a = total + int(nibbles), b
        return total

    @cached_property
    def ptr(self) -> np.ndarray:
        """Every row's pointer, then the last row's end (int64, rows + 1): made from the rows' lengths only where
        every row may be read (`gene-ae verify`, a gather past GATHER_BYTES)."""
        return self.pointers if isinstance(self.pointers, np.ndarray) else self.pointers.pointers()

    @property
    def rows(self) -> int:
        return int(self.pointers.size - 1 if isinstance(self.pointers, np.ndarray) else self.pointers.short.size)

    @property
    def end(self) -> int:
        """The last row's end: the nibbles the rows take."""
        return int((self.pointers if isinstance(self.pointers, np.ndarray) else self.pointers.at)[-1])

    def spans(self, rows: np.ndarray, source: str = "k-mer index") -> tuple[np.ndarray, np.ndarray]:
        """(first nibble, end) of each of these rows; a damaged row table is a ValueError naming `source`."""
        if isinstance(self.pointers, RowLengths) and "ptr" not in self.__dict__:
            try:
                return self.pointers.spans(rows)
            except ValueError as exc:
                raise ValueError(f"{source}: damaged k-mer postings ({exc}); rebuild the index") from None
        return self.ptr[rows], self.ptr[rows + 1]

    @property
    def nibbles(self) -> int:
        """The nibbles the stream holds: no row pointer may pass it (checked as rows are read, not on load)."""
        return 2 * int(self.stream.size)

    def _view(self) -> np.ndarray:
        """The stream as a plain array (a memmap's own indexing machinery is not needed: C reads its buffer)."""
        return np.ascontiguousarray(self.stream.view(np.ndarray) if isinstance(self.stream, np.memmap) else self.stream)

    def accumulate(self, rows: np.ndarray, weights: np.ndarray, source: str, gathered: Gathered | None = None
                   ) -> np.ndarray:  # fmt: skip
        """float64 [n_segments]: for each row rows[i], weights[i] added to each segment once per occurrence.
        `gathered`: rows read already (`gather`, holding every one of these), shared by the pieces of a query."""
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        stream, ptr, rows = self._gather(rows, source) if gathered is None else gathered.of(rows)
        scores = np.zeros(self.n_segments, np.float64)
        got = _lib().postings_accumulate(_at(stream), _at(ptr), _at(rows), _at(weights), rows.size, _at(scores),
                                         self.n_segments, 2 * stream.size, *self._order())  # fmt: skip
        if got == -2:
            raise MemoryError(f"{source}: no memory for the scores of {self.n_segments:,} segments")
        if got < 0:
            raise ValueError(f"{source}: damaged k-mer postings; rebuild the index")
        return scores

    def segments(self, rows: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(segments, entries per row) of these rows, concatenated in the order given, a repeat once per count."""
        lib = _lib()
        stream, ptr, rows = self._gather(np.ascontiguousarray(rows, dtype=np.int64), source)
        runs, nibbles = int(self.order is not None), 2 * stream.size
        lens = np.array([lib.postings_count(_at(stream), _at(ptr), _at(rows[i : i + 1]), 1, nibbles, runs)
                         for i in range(rows.size)], dtype=np.int64)  # fmt: skip
        out = np.empty(max(int(lens.sum()), 0), np.int64)
        got = lib.postings_decode(_at(stream), _at(ptr), _at(rows), rows.size, _at(out), out.size, self.n_segments,
                                  nibbles, *self._order())  # fmt: skip
        if (lens < 0).any() or got != out.size:
            raise ValueError(f"{source}: damaged k-mer postings; rebuild the index")
        return out, lens

    def row_bytes(self, rows: np.ndarray, source: str = "k-mer index") -> np.ndarray:
        """The bytes each of these rows takes in the stream (about: a row starts and ends on a nibble)."""
        lo, hi = self.spans(rows, source)
        return (hi - lo + 1) // 2

    def gather(self, rows: np.ndarray, source: str) -> Gathered:
        """These rows (repeats allowed) read once, for several accumulate calls: the pieces of a long query share
        half their k-mers with the next piece, and consecutive queries many of theirs."""
        held = np.sort(np.ascontiguousarray(rows, dtype=np.int64))
        held = held[np.r_[True, held[1:] != held[:-1]]] if held.size else held
        return Gathered(held, *self._gather(held, source))

    def _gather(self, rows: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stream, row pointers, rows) to read `rows` from: for a mapped stream, just those rows read from its file
        (postings.c's postings_read: a query's few thousand rows, not the 64 KB the kernel maps around each page
        they touch, which brought most of a 10^6-gene index's 1.5 GB of postings into the process), rows less than
        READ_GAP bytes apart in one read (a long query's rows lie a few KB apart: a read each cost it 10 %); the
        whole stream where there is no file or the rows pass GATHER_BYTES (`gene-ae verify` reads every row)."""
        if self._fd < 0 or rows.size == 0:
            return self._view(), self.ptr, rows
        lo, hi = self.spans(rows, source)
        if lo.min() < 0 or (hi < lo).any() or hi.max() > self.nibbles:  # as postings.c checks them when mapped
            raise ValueError(f"{source}: damaged k-mer postings; rebuild the index")
        first, last = lo // 2, (hi + 1) // 2  # each row's bytes
        order = np.argsort(first, kind="stable")
        first, last = first[order], last[order]
        reach = np.maximum.accumulate(last)
        opening = np.r_[True, first[1:] > reach[:-1] + READ_GAP]  # a read starts at each such row
        opens = np.flatnonzero(opening)
        starts, ends = first[opens], reach[np.r_[opens[1:], first.size] - 1]
        sizes = ends - starts  # held: C reads it
        room = int(sizes.sum())
        if room > GATHER_BYTES:
            return self._view(), self.ptr, rows
        at = np.r_[0, np.cumsum(sizes)[:-1]]  # where each read lands in buf
        buf = np.empty(max(room, 1), np.uint8)
        if _lib().postings_read(self._fd, int(self.stream.offset), _at(starts), _at(sizes), starts.size, _at(buf)) < 0:
            raise OSError(f"{source}: could not read the k-mer postings ({self.stream.filename})")
        read = np.cumsum(opening) - 1  # the read holding each row
        local = np.empty(2 * rows.size, np.int64)
        begin = 2 * (at[read] + first - starts[read]) + (lo[order] & 1)
        local[2 * order], local[2 * order + 1] = begin, begin + (hi - lo)[order]
        return buf, local, np.arange(0, 2 * rows.size, 2, dtype=np.int64)

    def _order(self) -> tuple[int | None, int]:
        """The C calls' last two arguments: the order's address (None: as stored) and whether runs are read."""
        return (None, 0) if self.order is None else (_at(self.order), 1)


@dataclass
class Gathered:
    """Rows read from a stream: `rows` (sorted, distinct) are read from `stream` through `ptr` at `at`."""

    rows: np.ndarray
    stream: np.ndarray
    ptr: np.ndarray
    at: np.ndarray

    def of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stream, row pointers, rows) as accumulate reads them, for rows all among those gathered."""
        place = np.searchsorted(self.rows, rows)
        if place.size and (place.max() >= self.rows.size or (self.rows[place] != rows).any()):
            raise ValueError("postings: a row asked of a gather that did not read it")
        return self.stream, self.ptr, np.ascontiguousarray(self.at[place])


def transpose(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_cols: int, order: np.ndarray | None = None,
    counts: np.ndarray | None = None, groups: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """The CSR rows (segments) of 16-bit counts transposed: (indptr, indices, values) of the columns (k-mers), each
    column's rows increasing; with `order`, rows taken in that order and numbered by their place in it (postings.c
    `postings_transpose`; staging 8 bytes a value in `groups` passes). `counts`: each column's values, when known
    (else counted here). None where the counts are not 16-bit (scipy's transpose then)."""
    if values.dtype != np.uint16:
        return None
    indptr = np.ascontiguousarray(indptr, np.int64)
    indices = np.ascontiguousarray(indices, np.int32)
    values = np.ascontiguousarray(values)
    if order is not None:
        order = np.ascontiguousarray(order, np.int32)
        rows = indptr.size - 1
        if order.size != rows or (rows and not 0 <= int(order.min()) <= int(order.max()) < rows):
            raise ValueError(f"an order of {order.size} rows within 0..{rows} for {rows} rows")
    if counts is not None:
        counts = np.ascontiguousarray(counts, np.int64)
        if counts.size != n_cols:
            raise ValueError(f"{counts.size} column counts for {n_cols} columns")
    nnz = int(indptr[-1])
    out_ptr = np.empty(n_cols + 1, np.int64)
    out_idx, out_val = np.empty(nnz, np.int32), np.empty(nnz, np.uint16)
    got = _lib().postings_transpose(_at(indptr), indptr.size - 1, _at(indices), _at(values),
                                    None if order is None else _at(order), n_cols,
                                    None if counts is None else _at(counts), groups, _at(out_ptr),
                                    _at(out_idx), _at(out_val))  # fmt: skip
    if got == -1:
        raise MemoryError("no memory to stage the k-mer counts' transpose")
    if got != nnz:
        raise ValueError("k-mer counts with a column outside the k-mers, or not as many as counted")
    return out_ptr, out_idx, out_val


def joined_lengths(lengths: np.ndarray, long: np.ndarray) -> tuple[np.ndarray, int]:
    """(row pointers, long rows read) from uint8 row lengths and the lengths of the rows marked 255, in order
    (gene_ae/index/compact.py owns that layout and checks it; RowLengths.of read them): a prefix sum in one compiled
    pass; -1 read where more rows are marked than `long` holds."""
    ptr = np.empty(lengths.size + 1, np.int64)
    used = _lib().postings_pointers(_at(lengths), lengths.size, _at(long), _width(long), long.size, _at(ptr))
    return ptr, int(used)


def _rows(indptr: np.ndarray, indices: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows as postings.c reads them: int64 row pointers, int32 indices, uint16 or uint32 counts (copies only
    where the types differ: a 10^6-gene shard's 130 million 16-bit counts widened took 520 MB more of its build)."""
    counts = np.asarray(counts)
    return (np.ascontiguousarray(indptr, np.int64), np.ascontiguousarray(indices, np.int32),
            np.ascontiguousarray(counts, np.uint16 if counts.dtype == np.uint16 else np.uint32))  # fmt: skip


def _wide(counts: np.ndarray) -> int:
    """postings_encode's `wide`: 1 for uint32 counts, 0 for uint16."""
    return int(counts.dtype == np.uint32)
