"""An .npz file's members read as arrays over one read-only map of the file: stored (np.savez) members without a copy
or a CRC pass; a compressed member (np.savez_compressed) read as numpy reads it.

Why: opening a 10^6-gene index (13 shards) read each shard's kmers.npz through zipfile, which copies every member and
computes its CRC-32: 50 ms of a one-query search's open, for bytes already checked against the file's sha256 when the
index is opened (gene_ae/index/directory.py), and of which a search reads a few thousand rows. Object arrays are
refused (as np.load(allow_pickle=False) refuses them).
"""

from __future__ import annotations

import io
import mmap
import struct
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

_LOCAL_HEADER = 30  # a zip local file header's fixed part; its name and extra field follow


class MappedNpz:
    """The members of an .npz file by name (without ".npy"); a stored member is a read-only view of the map, which
    stays open as long as an array viewing it does. ValueError where the file is not an .npz of plain arrays."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            try:
                self._zip = zipfile.ZipFile(f)
                self._infos = {i.filename.removesuffix(".npy"): i for i in self._zip.infolist()}
            except zipfile.BadZipFile as exc:
                raise ValueError(f"not an .npz file ({exc})") from None
            size = f.seek(0, io.SEEK_END)
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self._zip.fp = None  # the listing is kept; members are read from the map

    @property
    def files(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def __getitem__(self, name: str) -> np.ndarray:
        info = self._infos.get(name)
        if info is None:
            raise KeyError(f"{name} is not a member of {self.path.name}")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
            with np.load(self.path, allow_pickle=False) as z:
                return z[name]
        buf = self._map
        at = info.header_offset
        if buf is None or at + _LOCAL_HEADER > len(buf) or buf[at : at + 4] != b"PK\x03\x04":
            raise ValueError(f"member {name!r}: no local header at {at}")
        name_len, extra_len = struct.unpack("<HH", buf[at + 26 : at + _LOCAL_HEADER])
        start = at + _LOCAL_HEADER + name_len + extra_len
        end = start + info.file_size
        if end > len(buf):
            raise ValueError(f"member {name!r}: {info.file_size} bytes past the file's end")
        head = io.BytesIO(buf[start : min(end, start + 65536)])
        version = npy.read_magic(head)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = reader(head)
        if dtype.hasobject:
            raise ValueError(f"member {name!r}: an object array")
        count = int(np.prod(shape, dtype=np.int64))
        offset = start + head.tell()
        if offset + count * dtype.itemsize > end:
            raise ValueError(f"member {name!r}: {shape} {dtype} values past its {info.file_size} bytes")
        flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
        if not flat.flags.aligned:  # np.savez aligns nothing; C reads typed pointers (a copy: a few small arrays)
            flat = flat.copy()
        return flat.reshape(shape, order="F" if fortran else "C")

    def __enter__(self) -> MappedNpz:
        return self

    def __exit__(self, *exc) -> None:
        """The listing dropped; the map itself closes when the last array viewing it is gone."""
        self._infos = {}
