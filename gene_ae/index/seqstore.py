"""The index's own copy of its sequences, so re-ranking aligns against them without the original file.

Stored as the shard format's blocks (shard_tools.format: zstd, 2-bit packing for unrelated DNA), one file of
blocks written when a shard is finished, the records in the k-mer index's segment order (relatives side by side,
which zstd folds together), plus a small table of where each record lives. Blocks are small (32 Ki bases, about
twenty genes) so that fetching a candidate decompresses little: with 256 Ki-base blocks, fetching the ~55
candidates a query aligns took 40 % of a search at 10^5 genes (each fetch decoded ~170 records to keep one);
decoded blocks are cached per store. On SILVA's 204,065 genes the MinHash order and 32 Ki-base blocks took the
sequences from 53.4 to 31.2 MB with the same search time, the bisection order (gene_ae/index/order.py) to 21.9 MB,
and zstd level 16 (SequenceWriter) to 17.7 MB, 0.47 bits a base (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from gene_ae.core.threads import in_threads
from gene_ae.index.compact import narrow, wide
from shard_tools.format import decode_block, decode_columns, encode_block

BLOCKS_FILE, TABLE_FILE = "sequences.gae", "sequences.npz"
_T = TypeVar("_T")
BLOCK_BASES = 1 << 15


WRITE_BLOCKS = 256  # blocks compressed at once (~8 Mi bases): each batch is written before the next is compressed


class SequenceWriter:
    """Records (token arrays) added one at a time and staged as raw bases in a temporary file (memory: one record),
    then written as blocks at `close`, in the order it is given: relatives side by side are what zstd folds
    together (20,000 SILVA genes: 1.40 bits a base in the input's order, 1.04 in the k-mer index's MinHash order in
    16 Ki-base blocks, 0.90 in 32 Ki-base blocks). zstd level 16 (btultra): a quarter of SILVA's blocks 0.70 MB at
    level 3, 0.65 at 9 or 12, 0.56 at 16 in 0.64 s, 0.55 at 19 in 3.0 s; reading them costs the same. The blocks are
    compressed on `threads` threads (zstd releases Python's lock)."""

    STAGED = ".sequences.staged"

    def __init__(self, directory: str | Path, block_bases: int = BLOCK_BASES, level: int = 16, threads: int = 1):
        self.dir, self.block_bases, self.level, self.threads = Path(directory), block_bases, level, threads
        self._staged = open(self.dir / self.STAGED, "wb")
        self._ends = [0]  # each record's end in the staged file

    def add(self, tokens: np.ndarray) -> int:
        """Stage one record; returns its position."""
        self._staged.write(np.ascontiguousarray(tokens, dtype=np.uint8).tobytes())
        self._ends.append(self._ends[-1] + int(tokens.size))
        return len(self._ends) - 2

    def discard(self) -> None:
        """Close the staged file if `close` did not (a build that failed part way); nothing written."""
        self._staged.close()

    def close(self, order: np.ndarray | None = None) -> int:
        """Write the blocks, the records in `order` (a permutation of their positions; default: as added), and the
        table; returns the bytes of sequence data written."""
        self._staged.close()
        n = len(self._ends) - 1
        order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"sequences: the order of {n} records is not a permutation of them")
        path = self.dir / self.STAGED
        staged = np.memmap(path, dtype=np.uint8, mode="r") if self._ends[-1] else np.zeros(0, np.uint8)
        offsets, span = [0], np.zeros((n, 2), np.int64)
        blocks: list[list[tuple[dict, np.ndarray]]] = [[]]  # each block's parts (views of the staged file)
        filled = 0
        for rec in order.tolist():
            tokens = staged[self._ends[rec] : self._ends[rec + 1]]
            span[rec, 0] = len(blocks) - 1  # the block now open
            for offset in range(0, max(int(tokens.size), 1), self.block_bases):
                part = tokens[offset : offset + self.block_bases]
                span[rec, 1] = len(blocks) - 1
                blocks[-1].append(({"len": int(part.size), "rec": rec, "offset": offset}, part))
                filled += part.size
                if filled >= self.block_bases:
                    blocks.append([])
                    filled = 0
        if not blocks[-1]:
            blocks.pop()
        with open(self.dir / BLOCKS_FILE, "wb") as out:
            for first in range(0, len(blocks), WRITE_BLOCKS):  # compressed a batch at a time: memory stays bounded
                batch = blocks[first : first + WRITE_BLOCKS]
                for data in in_threads(lambda parts: encode_block(parts, self.level, self.block_bases), batch,
                                       self.threads):  # fmt: skip
                    out.write(data)
                    offsets.append(offsets[-1] + len(data))
        del staged
        path.unlink()
        np.savez(self.dir / TABLE_FILE, offsets=np.array(offsets, np.int64), span=narrow(span))
        return offsets[-1]


def _parts(member: bytes) -> dict[int, list[tuple[int, np.ndarray]]]:
    """A block's record parts by record: (offset in the record, tokens), read-only (a search hands them out as they
    are cached, not copied)."""
    columns, lengths, tokens = decode_columns(member)
    tokens.flags.writeable = False
    records: dict[int, list[tuple[int, np.ndarray]]] = {}
    ends = np.cumsum(lengths).tolist()
    for rec, offset, end, length in zip(columns["rec"], columns["offset"], ends, lengths, strict=True):
        records.setdefault(int(rec), []).append((int(offset), tokens[end - length : end]))
    return records


class SequenceStore:
    """Random access to the stored records by position."""

    # 512 decoded blocks (16 Mi bases, ~16 MB): a long query's ~40 candidates of up to 100 kb are read by its
    # alignment and again by its trace; 64 blocks of 16 Ki bases were evicted between the two (28,547 block decodes
    # for 16,047 records read on 150 real genome windows; with 16 Mi bases cached the 150 searched in 18.2-19.1 s,
    # not 21.5-22.2).
    def __init__(self, directory: str | Path, cache_blocks: int = 512):
        self.dir = Path(directory)
        try:
            with np.load(self.dir / TABLE_FILE) as table:
                self.offsets, self.span = wide(table["offsets"], "offsets"), wide(table["span"], "span", 2)
            blocks = self.offsets.size - 1  # checked whole on open (~1 ms at 10^5 records): a read never strays
            if blocks < 0 or self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any():
                raise ValueError("block offsets out of order")
            if self.span.shape[1] != 2 or (self.span.size and not (
                    0 <= self.span.min() and self.span.max() < max(blocks, 1)
                    and (self.span[:, 0] <= self.span[:, 1]).all())):  # fmt: skip
                raise ValueError(f"record spans outside its {blocks} blocks")
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{self.dir / TABLE_FILE}: not a sequence table ({exc})") from None
        self._cache: OrderedDict[int, dict[int, list]] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._lock = threading.Lock()
        self._fd = -1

    def __len__(self) -> int:
        return int(self.span.shape[0])

    def _block(self, b: int) -> dict[int, list]:
        """Block b's record parts by record (cached decoded): a remote query's deep search reads ~2,000 records, each
        found among its block's ~20 by one lookup, not a scan."""
        with self._lock:  # searched from several threads (engine.search's threads): the cache is shared
            if b in self._cache:
                self._cache.move_to_end(b)
                return self._cache[b]
        records = self._read(b, _parts)
        with self._lock:
            self._cache[b] = records
            if len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return records

    def _read(self, b: int, decode: Callable[[bytes], _T] = decode_block) -> _T:
        """Block b read from the file and decoded (not cached); a damaged one is a ValueError naming the file."""
        member = os.pread(self._file(), int(self.offsets[b + 1] - self.offsets[b]), int(self.offsets[b]))
        try:
            return decode(member)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.dir / BLOCKS_FILE}: block {b}: {exc}") from None

    def _file(self) -> int:
        """The blocks file's descriptor, opened at the first read and kept (closed with the store): opening it for
        each block cost a third of reading one, and a remote query's deep search reads hundreds."""
        with self._lock:
            if self._fd < 0:
                self._fd = os.open(self.dir / BLOCKS_FILE, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                weakref.finalize(self, os.close, self._fd)
            return self._fd

    def check(self, lengths: np.ndarray) -> None:
        """Every block decoded (zstd's checksums) and each record's parts all there with `lengths` bases (what
        `gene-ae verify` reads; a search decodes only the blocks it fetches). A ValueError names the file."""
        held = np.zeros(len(self), np.int64)
        for b in range(len(self.offsets) - 1):
            for r in self._read(b):
                rec = int(r.meta["rec"])
                if not 0 <= rec < len(self) or not self.span[rec, 0] <= b <= self.span[rec, 1]:
                    raise ValueError(f"{self.dir / BLOCKS_FILE}: block {b} holds record {rec} where the table has none")
                held[rec] += r.tokens.size
        wrong = np.flatnonzero(held != np.asarray(lengths, np.int64))
        if wrong.size:
            r = int(wrong[0])
            raise ValueError(f"{self.dir / BLOCKS_FILE}: record {r} has {held[r]:,} bases stored, the index lists "
                             f"{int(lengths[r]):,}; rebuild the index")  # fmt: skip

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} of {len(self)}")
        first, last = (int(x) for x in self.span[i])
        parts = [p for b in range(first, last + 1) for p in self._block(b).get(i, ())]
        if len(parts) == 1:
            return parts[0][1]
        parts.sort(key=lambda p: p[0])
        return np.concatenate([t for _, t in parts]) if parts else np.zeros(0, np.uint8)
