"""The index's own copy of its sequences, so re-ranking aligns against them without the original file.

Stored as the shard format's blocks (shard_tools.format: zstd, 2-bit packing for unrelated DNA), one file
of blocks appended while `gene-ae embed` streams, plus a small table of where each record lives. Blocks are
small (16 Ki bases, about ten genes) so that fetching a candidate decompresses little: with 256 Ki-base
blocks, fetching the ~55 candidates a query aligns took 40 % of a search at 10^5 genes (each fetch decoded
~170 records to keep one); decoded blocks are cached per store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from shard_tools.format import decode_block, encode_block

BLOCKS_FILE, TABLE_FILE = "sequences.gae", "sequences.npz"
BLOCK_BASES = 1 << 14


class SequenceWriter:
    """Append records (token arrays) to a directory's sequence blocks; memory is one block."""

    def __init__(self, directory: str | Path, block_bases: int = BLOCK_BASES, level: int = 3):
        self.dir, self.block_bases, self.level = Path(directory), block_bases, level
        self._file = open(self.dir / BLOCKS_FILE, "wb")
        self._offsets = [0]  # byte offset of each block, then the end
        self._span: list[tuple[int, int]] = []  # per record: first block, last block
        self._pending: list[tuple[dict, np.ndarray]] = []
        self._filled = 0

    def add(self, tokens: np.ndarray) -> int:
        """Store one record; returns its position."""
        rec, blocks = len(self._span), []
        for offset in range(0, max(int(tokens.size), 1), self.block_bases):
            part = tokens[offset : offset + self.block_bases]
            blocks.append(len(self._offsets) - 1)  # the block now open
            self._pending.append(({"len": int(part.size), "rec": rec, "offset": offset}, part))
            self._filled += part.size
            if self._filled >= self.block_bases:
                self._flush()
        self._span.append((blocks[0], blocks[-1]))
        return rec

    def _flush(self) -> None:
        if not self._pending:
            return
        data = encode_block(self._pending, self.level, self.block_bases)
        self._file.write(data)
        self._offsets.append(self._offsets[-1] + len(data))
        self._pending, self._filled = [], 0

    def close(self) -> int:
        """Flush and write the table; returns the bytes of sequence data written."""
        self._flush()
        self._file.close()
        span = np.array(self._span, dtype=np.int64).reshape(-1, 2)
        np.savez(self.dir / TABLE_FILE, offsets=np.array(self._offsets, np.int64), span=span)
        return self._offsets[-1]


class SequenceStore:
    """Random access to the stored records by position."""

    # 1,024 decoded blocks (16 Mi bases, ~16 MB): a long query's ~40 candidates of up to 100 kb are read by its
    # alignment and again by its trace; 64 blocks were evicted between the two (28,547 block decodes for 16,047
    # records read on 150 real genome windows; with 1,024 the 150 searched in 18.2-19.1 s, not 21.5-22.2).
    def __init__(self, directory: str | Path, cache_blocks: int = 1024):
        self.dir = Path(directory)
        try:
            with np.load(self.dir / TABLE_FILE) as table:
                self.offsets, self.span = table["offsets"], table["span"]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{self.dir / TABLE_FILE}: not a sequence table ({exc})") from None
        self._cache: OrderedDict[int, list] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self.span.shape[0])

    def _block(self, b: int) -> list:
        with self._lock:  # searched from several threads (engine.search's threads): the cache is shared
            if b in self._cache:
                self._cache.move_to_end(b)
                return self._cache[b]
        with open(self.dir / BLOCKS_FILE, "rb") as f:
            f.seek(int(self.offsets[b]))
            member = f.read(int(self.offsets[b + 1] - self.offsets[b]))
        try:
            records = decode_block(member)
        except ValueError as exc:
            raise ValueError(f"{self.dir / BLOCKS_FILE}: block {b}: {exc}") from None
        with self._lock:
            self._cache[b] = records
            if len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return records

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} of {len(self)}")
        first, last = (int(x) for x in self.span[i])
        parts = [r for b in range(first, last + 1) for r in self._block(b) if r.meta["rec"] == i]
        parts.sort(key=lambda r: r.meta["offset"])
        return np.concatenate([r.tokens for r in parts]) if parts else np.zeros(0, np.uint8)
