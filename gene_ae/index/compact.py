"""Integer columns of an index's tables stored in the fewest bytes that hold them, read back as int64.

Why: on SILVA's 204,065 genes the index's tables (records' lengths and spans, k-mer segments, sequence spans, the
k-mer row pointers) were int64 or uint32 where most values fit a byte or two: 26 MB of a 161.6 MiB index. Every
reader widens them to int64 on load, so the arrays in memory and every computation on them are as before.
"""

from __future__ import annotations

import numpy as np

_TYPES = (np.uint8, np.uint16, np.uint32, np.int32, np.int64)
LONG = 255  # a row length of this or more is kept in the long list


def narrow(values: np.ndarray) -> np.ndarray:
    """The values in the smallest of uint8, uint16, uint32, int32, int64 that holds them all."""
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise ValueError(f"not integers: {values.dtype}")
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for t in _TYPES:
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return values.astype(t, copy=False)
    raise ValueError("values past int64")  # unreachable for integer arrays of numpy's kinds below 2^63


def wide(values: np.ndarray, name: str, ndim: int = 1) -> np.ndarray:
    """A stored integer column (`ndim` dimensions) as int64; ValueError naming it when it is not one of the types
    narrow writes, or has other dimensions. Every reader of a narrowed column reads it through this."""
    if values.dtype not in [np.dtype(t) for t in _TYPES]:
        raise ValueError(f"{name!r} is {values.dtype}, not an integer column")
    if values.ndim != ndim:
        raise ValueError(f"{name!r} has {values.ndim} dimensions, not {ndim}")
    return values.astype(np.int64)


def split_lengths(pointers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increasing row pointers (ptr[0] = 0) as (each row's length in a byte, LONG where it is LONG or more; those
    rows' lengths in order, narrowed): SILVA's 2^20 k-mer rows a shard 4.2 MB as uint32 pointers, 1.2 MB so."""
    lengths = np.diff(np.asarray(pointers, dtype=np.int64))
    if lengths.size and lengths.min() < 0:
        raise ValueError("row pointers that do not increase")
    short = np.minimum(lengths, LONG).astype(np.uint8)
    return short, narrow(lengths[lengths >= LONG])


def checked_lengths(short: np.ndarray, long: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """split_lengths' two arrays as read back, checked: uint8 lengths, and the long ones in range in the unsigned type
    narrow gave them (or int64), not widened (at 10^6 genes half of a shard's 2^20 rows are long); ValueError else."""
    if short.dtype != np.uint8 or short.ndim != 1:
        raise ValueError(f"row lengths of type {short.dtype}")
    if long.dtype not in (np.uint8, np.uint16, np.uint32, np.int64) or long.ndim != 1:
        raise ValueError(f"long rows of type {long.dtype}")
    if long.size and not LONG <= long.min() <= long.max() < 2**40:  # the sum could wrap past int64 otherwise
        raise ValueError(f"long rows of {long.min()}..{long.max()} nibbles")
    return np.ascontiguousarray(short), np.ascontiguousarray(long)
