"""The reference reader: manifest + tar shards -> (id, tokens, metadata), parts joined again.

The training loader (gene_ae.data) decodes samples with the same `decode_block`; tests check they agree.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shard_tools.format import BLOCK_EXT, BlockRecord, decode_block
from shard_tools.manifest import ShardError, check_counts, load_manifest


def shard_path(out_dir: str | Path, name: str) -> Path:
    """The file a manifest's shard name stands for, refused if it leads outside OUT_DIR (a symlink, say)."""
    root = Path(out_dir)
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise ShardError(f"{path}: leads outside {root}; refused")
    return path


def check_shard_files(out_dir: str | Path, manifest: dict) -> None:
    """Every shard the manifest lists is there with the size it lists (a stat each, nothing read): a deleted or
    truncated shard is one line naming it before any work, not an error from deep inside a reader later."""
    where = Path(out_dir) / "manifest.json"
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            path = shard_path(out_dir, shard["name"])
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise ShardError(f"{path}: missing (listed in {where}); restore it, or shard again") from None
            if size != shard["bytes"]:
                raise ShardError(f"{path}: {size:,} bytes, {where} lists {shard['bytes']:,}: truncated or changed; "
                                 f"check it with shard-verify {out_dir}, or shard again")  # fmt: skip


def shard_paths(out_dir: str | Path, split: str) -> list[Path]:
    manifest = load_manifest(out_dir)
    check_counts(manifest, str(Path(out_dir) / "manifest.json"))
    if split not in manifest["splits"]:
        raise ShardError(f"{out_dir}: no split {split!r} (have {sorted(manifest['splits'])})")
    return [shard_path(out_dir, s["name"]) for s in manifest["splits"][split]["shards"]]


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group a tar's members into samples by key (the name up to the first dot), in order."""
    key, members = None, {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                k, _, ext = info.name.partition(".")
                if k != key and key is not None:
                    yield key, members
                    members = {}
                key = k
                fobj = tar.extractfile(info)
                assert fobj is not None
                members[ext] = fobj.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ShardError(f"{path}: unreadable tar: {exc}") from None
    if key is not None:
        yield key, members


def decode_sample(path: Path, key: str, members: dict[str, bytes]) -> list[BlockRecord]:
    if BLOCK_EXT not in members:
        raise ShardError(f"{path}: sample {key!r} has no .{BLOCK_EXT} member (has {sorted(members)})")
    try:
        return decode_block(members[BLOCK_EXT])
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardError(f"{path}: sample {key!r}: {exc}") from None


def iter_blocks(out_dir: str | Path, split: str) -> Iterator[BlockRecord]:
    """Every stored record part, in order (long records come as several consecutive parts)."""
    for path in shard_paths(out_dir, split):
        for key, members in iter_tar_samples(path):
            yield from decode_sample(path, key, members)


def read_shards(out_dir: str | Path, split: str = "train") -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield (id, tokens as uint8, metadata) per record, joining the parts of long records."""
    pending: list[np.ndarray] = []
    for rec in iter_blocks(out_dir, split):
        meta = rec.meta
        pending.append(rec.tokens)
        if meta["part"] == meta["parts"] - 1:
            tokens = pending[0] if len(pending) == 1 else np.concatenate(pending)
            pending = []
            full = {k: v for k, v in meta.items() if k not in ("part", "parts", "offset")}
            full["len"] = int(tokens.size)
            yield meta["id"], tokens, full
    if pending:
        raise ShardError(f"{out_dir}: split {split!r} ends inside a multi-part record")
