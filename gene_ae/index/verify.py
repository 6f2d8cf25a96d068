"""`gene-ae verify`: an index checked in full, the parts a search reads lazily too.

Why a command of its own: opening an index checks index.json and the small parts against their sha256, but the large
parts are only checked as they are read (the postings' ranges row by row, the sequences' zstd checksums block by
block, the vectors' sha256 on first use), so a search can run on a copy whose untouched rows are damaged. After a
copy, a download or a disk error, `gene-ae verify` reads every part: each sha256 index.json records, every k-mer
row decoded within the segments, every sequence block decoded and each record's bases all there, the vectors
loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gene_ae.index.collection import Collection
from gene_ae.index.directory import check_files


@dataclass(frozen=True)
class Verified:
    shards: int
    records: int
    files: int
    bytes: int


def verify(index: str | Path) -> Verified:
    """Every shard of the index at `index` read in full; a ValueError naming the file at the first fault."""
    collection = Collection.open(index)  # index.json's schema and digest, the small parts, shards.json
    files = size = 0
    for shard in collection.shards:
        check_files(shard.path, shard.meta, every=True)
        shard.meta.entries.check()
        files += len(shard.meta.files)
        size += sum((shard.path / name).stat().st_size for name in shard.meta.files)
        if shard.kmers is not None:
            lists = shard.kmers.lists
            rows = np.arange(lists.rows, dtype=np.int64)
            lists.accumulate(rows, np.ones(rows.size), str(shard.path))  # every row within its segments
        if shard.sequences is not None:
            shard.sequences.check(shard.lengths)
        if shard.dense is None:  # read on first use: the record vectors' count and dims checked as they load
            raise ValueError(f"{shard.path}: holds no record vectors")
    return Verified(len(collection.shards), len(collection), files, size)
