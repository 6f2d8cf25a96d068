"""shard-verify: re-read every shard and check it against the manifest, stopping at the first bad one.

Nothing the manifest says about the shards is taken on trust: every count (per shard, per split, the summary)
and every length histogram is recomputed from the records the shards hold, and the directory may hold nothing
but manifest.json, its split folders and the shards it lists.
"""

from __future__ import annotations

from pathlib import Path

from shard_tools.files import sha256_file
from shard_tools.format import BlockRecord
from shard_tools.manifest import check_counts, foreign_entries, length_bin
from shard_tools.reader import ShardError, decode_sample, iter_tar_samples, load_manifest, shard_path


def _int_list(value: object, where: str, what: str) -> list[int]:
    if not isinstance(value, list) or any(type(v) is not int or v < 0 for v in value):
        raise ShardError(f"{where}: {what} must be a list of non-negative integers, got {value!r:.60}")
    return value


def _edges(manifest: dict, where: str) -> list[int]:
    edges = _int_list(manifest.get("length_histogram_edges"), where, "'length_histogram_edges'")
    if len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ShardError(f"{where}: 'length_histogram_edges' must be at least two increasing integers")
    return edges


class _SplitRecords:
    """Joins a split's record parts as read_shards does, counting the records and their length histogram."""

    def __init__(self, split: str, edges: list[int]):
        self.split, self.edges = split, edges
        self.sequences, self.hist = 0, [0] * (len(edges) - 1)
        self.ids: list[str] = []
        self._open: tuple[str, int, int, int] | None = None  # key, next part, parts, bases so far

    def add(self, path: Path, sample: str, rec: BlockRecord) -> None:
        meta = rec.meta
        key, part, parts, offset = meta.get("key"), meta.get("part"), meta.get("parts"), meta.get("offset")
        if not (isinstance(key, str) and all(type(v) is int for v in (part, parts, offset)) and 0 <= part < parts):
            raise ShardError(f"{path}: sample {sample!r}: record {key!r:.80} has bad part numbers {part!r}/{parts!r}")
        if self._open is None:
            self._open = (key, 0, parts, 0)
        want_key, want_part, want_parts, bases = self._open
        if (key, part, parts, offset) != (want_key, want_part, want_parts, bases):
            raise ShardError(
                f"{path}: sample {sample!r}: record {key!r:.80} part {part} of {parts} at base {offset} "
                f"does not continue record {want_key!r:.80} (want part {want_part} of {want_parts} at base {bases})"
            )
        bases += int(rec.tokens.size)
        if part < parts - 1:
            self._open = (key, part + 1, parts, bases)
            return
        self._open = None
        self.sequences += 1
        self.hist[length_bin(bases, self.edges)] += 1
        self.ids.append(str(meta.get("id")))

    def finish(self, where: str) -> None:
        if self._open is not None:
            raise ShardError(f"{where}: split {self.split!r} ends inside multi-part record {self._open[0]!r:.80}")


def _check_shard(out_dir: str | Path, shard: dict, records: _SplitRecords) -> tuple[int, int, int]:
    path = shard_path(out_dir, shard["name"])
    if not path.is_file():
        raise ShardError(f"{path}: missing")
    digest = sha256_file(path)
    if digest != shard["sha256"]:
        raise ShardError(f"{path}: sha256 {digest[:12]}... does not match the manifest")
    if path.stat().st_size != shard["bytes"]:
        raise ShardError(f"{path}: {path.stat().st_size:,} bytes, manifest says {shard['bytes']:,}")
    samples = parts = bases = 0
    for key, members in iter_tar_samples(path):
        for rec in decode_sample(path, key, members):
            records.add(path, key, rec)
            parts += 1
            bases += int(rec.tokens.size)
        samples += 1
    got = (samples, parts, bases)
    want = (shard["samples"], shard["parts"], shard["bases"])
    if got != want:
        raise ShardError(f"{path}: holds samples/parts/bases {got}, manifest says {want}")
    return got


def _check_recounts(manifest: dict, where: str, found: dict[str, _SplitRecords]) -> None:
    """The counts check_counts cannot derive from the shard entries: records, histograms, summary."""
    for split, records in found.items():
        info = manifest["splits"][split]
        if info["sequences"] != records.sequences:
            raise ShardError(
                f"{where}: split {split!r}: sequences {info['sequences']:,}, but its shards hold "
                f"{records.sequences:,} records"
            )
        hist = _int_list(info.get("length_histogram"), f"{where}: split {split!r}", "'length_histogram'")
        if hist != records.hist:
            raise ShardError(
                f"{where}: split {split!r}: length_histogram {hist} disagrees with the shards' {records.hist}"
            )
    summary = manifest["summary"]
    ids = [rid for records in found.values() for rid in records.ids]
    recounted = {
        "output_bytes": sum(sh["bytes"] for info in manifest["splits"].values() for sh in info["shards"]),
        "duplicate_ids": len(ids) - len(set(ids)),
    }
    for key, value in recounted.items():
        if key in summary and summary[key] != value:
            raise ShardError(f"{where}: summary {key} {summary[key]!r:.40} disagrees with the shards' {value:,}")


def _check_nothing_else(out_dir: str | Path, manifest: dict) -> None:
    foreign = foreign_entries(Path(out_dir), manifest)
    if foreign:
        shown = ", ".join(repr(str(p)) for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if foreign[3:] else "")
        unlisted = sum(p.suffix == ".tar" for p in foreign)
        raise ShardError(
            f"{out_dir}: holds {len(foreign)} entries manifest.json does not list ({unlisted} unlisted shards): "
            f"{shown}; a shard directory holds only manifest.json, its split folders and the shards it lists"
        )


def verify(out_dir: str | Path) -> dict[str, int]:
    """Check sha256, size, sample, part and base counts and decode every sample; recount the splits' records,
    histograms and the summary; refuse unlisted files. Raise ShardError on the first fault.

    load_manifest checks the manifest's schema and shard names; its totals are checked after the shards, so a
    wrong shard entry is named as such rather than as the total it no longer matches.
    """
    manifest = load_manifest(out_dir)
    where = str(Path(out_dir) / "manifest.json")
    edges = _edges(manifest, where)
    totals = {"shards": 0, "samples": 0, "parts": 0, "bases": 0}
    found: dict[str, _SplitRecords] = {}
    for split, info in manifest["splits"].items():
        records = found[split] = _SplitRecords(split, edges)
        for shard in info["shards"]:
            samples, parts, bases = _check_shard(out_dir, shard, records)
            totals["shards"] += 1
            totals["samples"] += samples
            totals["parts"] += parts
            totals["bases"] += bases
        records.finish(where)
    check_counts(manifest, where)
    _check_recounts(manifest, where, found)
    _check_nothing_else(out_dir, manifest)
    return totals
