"""shard-verify: re-read every shard and check it against the manifest, stopping at the first bad one."""

from __future__ import annotations

from pathlib import Path

from shard_tools.files import sha256_file
from shard_tools.manifest import check_counts
from shard_tools.reader import ShardError, decode_sample, iter_tar_samples, load_manifest, shard_path


def verify(out_dir: str | Path) -> dict[str, int]:
    """Check sha256, sample, part and base counts and decode every sample; raise ShardError on the first fault.

    load_manifest checks the manifest's schema and shard names; its totals are checked after the shards.
    """
    manifest = load_manifest(out_dir)
    totals = {"shards": 0, "samples": 0, "parts": 0, "bases": 0}
    for info in manifest["splits"].values():
        for shard in info["shards"]:
            path = shard_path(out_dir, shard["name"])
            if not path.is_file():
                raise ShardError(f"{path}: missing")
            digest = sha256_file(path)
            if digest != shard["sha256"]:
                raise ShardError(f"{path}: sha256 {digest[:12]}... does not match the manifest")
            samples = parts = bases = 0
            for key, members in iter_tar_samples(path):
                records = decode_sample(path, key, members)
                samples += 1
                parts += len(records)
                bases += sum(int(r.tokens.size) for r in records)
            got = (samples, parts, bases)
            want = (shard["samples"], shard["parts"], shard["bases"])
            if got != want:
                raise ShardError(f"{path}: holds samples/parts/bases {got}, manifest says {want}")
            totals["shards"] += 1
            totals["samples"] += samples
            totals["parts"] += parts
            totals["bases"] += bases
    check_counts(manifest, str(Path(out_dir) / "manifest.json"))
    return totals
