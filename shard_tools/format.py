"""The shard format: the one definition of what a sample in a gene-ae tar shard holds.

Why blocks, not one tar member per sequence: a tar header costs 512 bytes and a member pads to 512,
which dwarfs a 1.5 kb gene at 2 bits/base; and zstd compresses related sequences far below 2
bits/base only when it sees them together. So one WebDataset sample is a *block* of records, a
single member `KEY.gae.zst` holding two zstd frames (long-distance matching on):

    u32 little-endian n, then an n-byte zstd frame of JSON metadata, then a zstd frame of bases

(Two frames, because zstd's strong parsers lose ~0.1 bits/base when JSON precedes the bases.)

The metadata is columnar so that zstd sees like next to like: {"codec", "n_runs", "columns":
{"id": [...], "key": [...], "desc": [...], "len": [...], "part": [...], "parts": [...],
"offset": [...], "label"?: [...], ...}}. Codec "u8" stores one token byte per base (best for
related sequences, which the long-distance matcher folds together); "2bit" stores four bases per
byte with N runs listed in "n_runs" (best for unrelated DNA such as single genomes: <= 2
bits/base). The writer keeps whichever frame is smaller.

Records longer than one block are stored as consecutive parts ("part" i of "parts", starting at
base "offset"); `shard_tools.read_shards` joins them again. Nothing is truncated.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import zstandard

from shard_tools.alphabet import FIRST_BASE, N

FORMAT_NAME = "gene-ae-shards"
FORMAT_VERSION = 1
BLOCK_EXT = "gae.zst"
BASE_COLUMNS = ("id", "key", "desc", "len", "part", "parts", "offset")
CODECS = ("u8", "2bit")
MAX_KEY_LEN = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass
class BlockRecord:
    """A decoded record (or part of one) from a block."""

    meta: dict
    tokens: np.ndarray


def sanitise_key(record_id: str) -> str:
    """A key safe as a file name and as a WebDataset key: ASCII word characters, no dots, bounded."""
    ascii_id = unicodedata.normalize("NFKD", record_id).encode("ascii", "ignore").decode()
    key = _UNSAFE.sub("_", ascii_id).strip("_")[:MAX_KEY_LEN]
    return key or "record"


def _compressor(level: int, block_bases: int) -> zstandard.ZstdCompressor:
    window_log = max(20, min(27, int(block_bases).bit_length() + 1))
    params = zstandard.ZstdCompressionParameters.from_level(
        level, enable_ldm=True, window_log=window_log, write_checksum=True
    )
    return zstandard.ZstdCompressor(compression_params=params)


def _pack_2bit(tokens: np.ndarray) -> tuple[bytes, list[list[int]]]:
    is_n = tokens == N
    codes = np.where(is_n, 0, tokens.astype(np.int16) - FIRST_BASE).astype(np.uint8)
    codes = np.concatenate([codes, np.zeros(-len(codes) % 4, np.uint8)]).reshape(-1, 4)
    packed = (codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], is_n.view(np.int8), [0]])))
    runs = [[int(s), int(e - s)] for s, e in zip(edges[::2], edges[1::2])]
    return packed.astype(np.uint8).tobytes(), runs


def _unpack_2bit(data: bytes, length: int, runs: list[list[int]]) -> np.ndarray:
    packed = np.frombuffer(data, dtype=np.uint8)
    codes = np.stack([(packed >> s) & 3 for s in (6, 4, 2, 0)], axis=1).reshape(-1)[:length]
    tokens = codes + np.uint8(FIRST_BASE)
    for start, run in runs:
        tokens[start : start + run] = N
    return tokens


def _member(meta: dict, payload: bytes, cctx: zstandard.ZstdCompressor) -> bytes:
    head = cctx.compress(json.dumps(meta, separators=(",", ":")).encode())
    return len(head).to_bytes(4, "little") + head + cctx.compress(payload)


def choose_level(probe_bits_per_base: float) -> int:
    """Auto level: fast where zstd -3 already wins, strong for gene-like collections.

    zstd -3 runs at ~300 MB/s and is enough below 1 bit/base (16S, outbreak genomes), but loses to
    gzip -9 on unrelated genes (dog: 1.87 vs 1.76 bits/base); -16 (btultra) beats it (1.58) at a
    few MB/s, and only blocks that need it pay.
    """
    return 3 if probe_bits_per_base < 1.0 else 16


def encode_block(parts: list[tuple[dict, np.ndarray]], level: int | None, block_bases: int) -> bytes:
    """Compress one block of (record metadata, tokens) into one sample member.

    A level-1 probe picks the codec: blocks that zstd cannot squeeze below ~1.95 bits/base are
    unrelated DNA and go 2-bit packed; the rest stay one byte per base for the match finder.
    `level=None` chooses the level from the probe as well.
    """
    tokens = np.concatenate([t for _, t in parts]) if parts else np.zeros(0, np.uint8)
    if tokens.size and (tokens.min() < FIRST_BASE or tokens.max() > N):
        raise ValueError("block holds special tokens; only bases (A, C, G, T, N) are stored")
    names = list(BASE_COLUMNS) + sorted({k for m, _ in parts for k in m} - set(BASE_COLUMNS))
    columns = {k: [m.get(k) for m, _ in parts] for k in names}
    u8_meta = {"codec": "u8", "columns": columns}
    probe = _member(u8_meta, tokens.tobytes(), _compressor(1, block_bases))
    probe_bpb = 8 * len(probe) / max(tokens.size, 1)
    if probe_bpb > 1.95:
        packed, runs = _pack_2bit(tokens)
        meta = {"codec": "2bit", "n_runs": runs, "columns": columns}
        two = _member(meta, packed, _compressor(level or 3, block_bases))
        return two if len(two) < len(probe) else probe
    return _member(u8_meta, tokens.tobytes(), _compressor(level or choose_level(probe_bpb), block_bases))


MAX_META_BYTES = 1 << 26  # a block's metadata frame; real ones are a few kB
MAX_BODY_BYTES = 1 << 31  # a block's bases; real blocks hold --block-bases (default 4 M)


def _decompress(dctx: zstandard.ZstdDecompressor, frame: bytes, limit: int) -> bytes:
    """Decompress one frame of at most `limit` bytes: a damaged header declaring terabytes is an error,
    not an attempt to allocate them."""
    declared = zstandard.frame_content_size(frame)  # -1: not declared
    if declared > limit:
        raise ValueError(f"corrupt block: a frame declares {declared:,} bytes, more than the {limit:,} expected")
    return dctx.decompress(frame, max_output_size=limit)


def decode_block(member: bytes) -> list[BlockRecord]:
    """Inverse of encode_block; raises ValueError on any inconsistency."""
    columns, lengths, tokens = decode_columns(member)
    out, start = [], 0
    for i, length in enumerate(lengths):
        rec = {k: v[i] for k, v in columns.items() if v[i] is not None}
        out.append(BlockRecord(rec, tokens[start : start + length]))
        start += length
    return out


def decode_columns(member: bytes) -> tuple[dict[str, list], list[int], np.ndarray]:
    """A block as (its metadata columns, each record's length, all its tokens end to end), checked as decode_block
    checks it: for a reader that wants a few columns of every record (a search reads a record among ~20 a block),
    not a dict per record."""
    try:
        dctx = zstandard.ZstdDecompressor()
        n = int.from_bytes(member[:4], "little")
        meta = json.loads(_decompress(dctx, member[4 : 4 + n], MAX_META_BYTES))
        columns = meta["columns"]
        lengths = [int(x) for x in columns["len"]]
        total = sum(lengths)
        expected = total if meta["codec"] == "u8" else -(-total // 4)
        if not 0 <= expected <= MAX_BODY_BYTES or any(x < 0 for x in lengths):
            raise ValueError(f"corrupt block: its records claim {total:,} bases")
        body = _decompress(dctx, member[4 + n :], max(expected, 1))
    except (zstandard.ZstdError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"corrupt block: {exc}") from None
    if meta["codec"] == "u8":
        tokens = np.frombuffer(body, dtype=np.uint8)
    elif meta["codec"] == "2bit":
        if len(body) != -(-total // 4):
            raise ValueError(f"block holds {len(body)} packed bytes, its records say {total} bases")
        tokens = _unpack_2bit(body, total, meta.get("n_runs", []))
    else:
        raise ValueError(f"unknown codec {meta['codec']!r}")
    if tokens.size != total:
        raise ValueError(f"block holds {tokens.size} bases, its records say {total}")
    if total and (tokens.min() < FIRST_BASE or tokens.max() > N):
        raise ValueError("block holds tokens outside the alphabet")
    return columns, lengths, tokens
