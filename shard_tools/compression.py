"""Compressed input: the codec chosen by magic bytes (gzip, bz2, xz, zstd), not by name, and the text fixes
every format reads through (a UTF-8 byte-order mark dropped, old Mac CR line endings made LF)."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import zstandard

from shard_tools.record import STDIN, InputError

# What a corrupt or truncated compressed stream raises (zlib.error is not an OSError).
DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error)


class _ZstdReader(io.RawIOBase):
    """Concatenated zstd frames, with EOFError when the input stops inside a frame.

    zstandard's own readers return the data decoded so far and then end-of-file on a truncated input,
    which would silently drop every record after the cut; gzip, bz2 and lzma raise EOFError, so this does too.
    """

    def __init__(self, raw: IO[bytes]):
        self._raw, self._dctx = raw, zstandard.ZstdDecompressor()
        self._frame: zstandard.ZstdDecompressionObj | None = None  # None between frames
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._out:
            data = self._raw.read(1 << 16)
            if not data:
                if self._frame is not None:
                    raise EOFError("compressed file ended before the end of a zstd frame (truncated?)")
                return 0
            self._out = memoryview(self._decompress(data))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            out.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            data, self._frame = self._frame.unused_data, None
        return b"".join(out)


class _CrToLf(io.RawIOBase):
    """A byte stream with every CR turned into LF: old Mac (CR-only) line endings read as line endings."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._raw.read1(len(buffer))  # type: ignore[attr-defined]  # what a pipe has, without waiting
        buffer[: len(data)] = data.replace(b"\r", b"\n")
        return len(data)


_MAGIC = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f),
    b"BZh": bz2.BZ2File,
    b"\xfd7zXZ\x00": lzma.LZMAFile,
    b"\x28\xb5\x2f\xfd": lambda f: io.BufferedReader(_ZstdReader(f), 1 << 16),
}


@contextlib.contextmanager
def open_binary(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a possibly compressed file ('-': standard input), choosing the codec by magic bytes, not by name."""
    with contextlib.ExitStack() as stack:
        raw = sys.stdin.buffer if str(path) == STDIN else stack.enter_context(open(path, "rb"))
        if not isinstance(raw, io.BufferedReader):
            raw = io.BufferedReader(raw)  # type: ignore[arg-type]
        head = raw.peek(6)[:6]
        wrap = next((w for magic, w in _MAGIC.items() if head.startswith(magic)), None)
        yield stack.enter_context(wrap(raw)) if wrap else raw


_UTF8_BOM = b"\xef\xbb\xbf"


def text_start(stream: io.BufferedReader, path: str | Path) -> tuple[io.BufferedReader, bytes]:
    """The stream past a UTF-8 byte-order mark, CR-only line endings turned into LF, and its first 4 kB.

    Both come from editors and spreadsheets on Windows and old Macs; any codec, any format, stdin too.
    """
    head = stream.peek(4096)[:4096]
    if head.startswith(_UTF8_BOM):
        stream.read(len(_UTF8_BOM))
        head = stream.peek(4096)[:4096]
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(path, "UTF-16 text (byte-order mark); save it as UTF-8 (iconv -f UTF-16 -t UTF-8)", line=1)
    if b"\r" in head[:-1] and b"\n" not in head:  # old Mac line endings (a CRLF's LF may be just past the head)
        stream = io.BufferedReader(_CrToLf(stream), 1 << 16)
        head = stream.peek(4096)[:4096]
    return stream, head
