"""manifest.json checked before use: its schema, shard names confined to OUT_DIR, and counts that add up.

A manifest is read back by shard-verify, the reader, the training loader and the cluster stager; anyone may
have edited it, so a value of the wrong type, a shard named `../../x.tar` or `/etc/x.tar`, or totals that
disagree with their shards is a ShardError naming the file, never a KeyError or a file outside OUT_DIR.
"""

from __future__ import annotations

import bisect
import json
import re
from pathlib import Path, PurePosixPath

from shard_tools.format import FORMAT_NAME, FORMAT_VERSION

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
SHARD_COUNTS = ("bytes", "samples", "parts", "bases")
SPLIT_COUNTS = ("samples", "sequences", "parts", "bases")
# Record lengths are counted per split in bins [edge, next edge); the last bin also takes anything longer.
HIST_EDGES = [0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 10_000_000]


def length_bin(length: int, edges: list[int] = HIST_EDGES) -> int:
    """The histogram bin of a record of `length` bases: the writer's and shard-verify's one rule."""
    return max(0, min(bisect.bisect_right(edges, length) - 1, len(edges) - 2))


class ShardError(ValueError):
    """A shard directory or shard that does not match its manifest."""


def _count(where: str, obj: dict, key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or value < 0:  # bool is an int subclass: refused too
        raise ShardError(f"{where}: {key!r} must be a non-negative integer, got {value!r:.60}")
    return value


def _dict(where: str, value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise ShardError(f"{where}: {what} must be a JSON object, got {type(value).__name__}")
    return value


def check_shard_name(name: object, split: str) -> str:
    """A relative path SPLIT/FILE.tar of plain names: no '..', no absolute path, no backslash or control chars."""
    if not isinstance(name, str):
        raise ValueError(f"shard name must be a string, got {name!r:.60}")
    parts = PurePosixPath(name).parts
    plain = len(parts) == 2 and name == "/".join(parts) and all(_PART.fullmatch(p) for p in parts)
    if not plain or parts[0] != split or not name.endswith(".tar"):
        raise ValueError(f"unsafe or unexpected shard name {name!r:.100} (want {split}/NAME.tar inside OUT_DIR)")
    return name


def check_manifest(manifest: object, where: str) -> dict:
    """Raise ShardError unless `manifest` has the writer's shape: types, counts >= 0, safe and unique shard names."""
    manifest = _dict(where, manifest, "the manifest")
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        fmt, version = manifest.get("format"), manifest.get("format_version")
        want = f"{FORMAT_NAME} v{FORMAT_VERSION}"
        raise ShardError(f"{where}: unsupported format {fmt!r:.60} v{version!r:.20} (want {want})")
    splits = _dict(where, manifest.get("splits"), "'splits'")
    names: set[str] = set()
    for split, info in splits.items():
        at = f"{where}: split {split!r:.40}"
        if not _PART.fullmatch(split):
            raise ShardError(f"{at}: not a plain name")
        info = _dict(at, info, "the split")
        for key in SPLIT_COUNTS:
            _count(at, info, key)
        if not isinstance(info.get("shards"), list):
            raise ShardError(f"{at}: 'shards' must be a list")
        for i, shard in enumerate(info["shards"]):
            shard = _dict(f"{at} shard {i}", shard, "a shard")
            try:
                name = check_shard_name(shard.get("name"), split)
            except ValueError as exc:
                raise ShardError(f"{at} shard {i}: {exc}") from None
            if name in names:
                raise ShardError(f"{at}: shard {name!r} listed twice")
            names.add(name)
            for key in SHARD_COUNTS:
                _count(f"{at} shard {name!r}", shard, key)
            if not isinstance(shard.get("sha256"), str) or not _HEX64.fullmatch(shard["sha256"]):
                raise ShardError(f"{at} shard {name!r}: 'sha256' must be 64 lower-case hex digits")
    features = manifest.setdefault("features", {})  # absent from manifests written before features
    features = _dict(where, features, "'features'")
    for name, kind in features.items():
        if not name or kind not in ("numeric", "categorical"):
            raise ShardError(f"{where}: features: {name!r:.60} must be numeric or categorical, got {kind!r:.40}")
    summary = _dict(where, manifest.get("summary"), "'summary'")
    for key in ("records", "bases"):
        _count(f"{where}: summary", summary, key)
    return manifest


def check_counts(manifest: dict, where: str) -> None:
    """Raise ShardError unless each split's totals are its shards' sums and the summary is the splits' sum.

    Kept apart from check_manifest so that shard-verify, which compares every shard with its entry first,
    names the shard whose entry is wrong rather than the total it no longer matches.
    """
    totals = dict.fromkeys(SPLIT_COUNTS, 0)
    for split, info in manifest["splits"].items():
        for key in SPLIT_COUNTS:
            if key != "sequences":
                got = sum(shard[key] for shard in info["shards"])
                if info[key] != got:
                    raise ShardError(
                        f"{where}: split {split!r}: {key} {info[key]} disagrees with its shards' sum {got}"
                    )
            totals[key] += info[key]
        if info["sequences"] > info["parts"]:
            raise ShardError(f"{where}: split {split!r}: {info['sequences']} sequences in {info['parts']} parts")
    for key, total in (("records", totals["sequences"]), ("bases", totals["bases"])):
        if manifest["summary"][key] != total:
            raise ShardError(
                f"{where}: summary {key} {manifest['summary'][key]} disagrees with the splits' sum {total}"
            )


def parse_manifest(raw: bytes, where: str) -> dict:
    """json.loads + check_manifest, every failure a one-line ShardError naming `where`."""
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShardError(f"{where}: not valid JSON: {message[:200]!r}") from None
    return check_manifest(manifest, where)


def load_manifest(out_dir: str | Path) -> dict:
    """Read and check manifest.json: a file anyone could have edited, so nothing in it is taken on trust."""
    path = Path(out_dir) / "manifest.json"
    if not Path(out_dir).is_dir():
        what = "is not a directory" if Path(out_dir).exists() else "no such directory"
        raise ShardError(f"{out_dir}: {what} (want a shard directory written by shard-fasta)")
    if not path.is_file():
        raise ShardError(f"{path}: no manifest (not a shard directory, or an interrupted write)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ShardError(f"{path}: unreadable: {exc.strerror}") from None
    return parse_manifest(raw, str(path))


def check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse an OUT_DIR that exists, unless overwrite is set and it is a shard directory this tool wrote.

    "Wrote" means: a valid manifest.json, and nothing in the directory but that manifest, the split folders
    and the shards it lists; so an input file, or anything else a user keeps there, is never deleted.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise FileExistsError(
            f"{out_dir}: exists and is not a directory (an input file? OUT_DIR comes last); "
            "only a shard directory is ever replaced"
        )
    if not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (use --overwrite to replace it)")
    if not (out_dir / "manifest.json").is_file():
        raise FileExistsError(f"{out_dir}: not replaced: no manifest.json, so not a shard directory")
    try:
        manifest = load_manifest(out_dir)
    except ShardError as exc:
        raise FileExistsError(f"not replaced: {exc}") from None
    foreign = foreign_entries(out_dir, manifest)
    if foreign:
        raise FileExistsError(
            f"{out_dir}: not replaced: holds {str(foreign[0])!r}, which the shard tools did not write "
            "(only a shard directory as the shard tools left it is replaced)"
        )


def foreign_entries(out_dir: Path, manifest: dict) -> list[Path]:
    """What a shard directory holds besides manifest.json, its split folders and the shards the manifest
    lists (symlinks count as foreign), as sorted paths relative to out_dir. The one definition of "a shard
    directory as shard-fasta left it", for --overwrite and for shard-verify."""
    ours = {Path("manifest.json"), *(Path(s) for s in manifest["splits"])}
    ours |= {Path(sh["name"]) for st in manifest["splits"].values() for sh in st["shards"]}
    found = (path for path in sorted(out_dir.rglob("*")) if path.relative_to(out_dir) not in ours or path.is_symlink())
    return [path.relative_to(out_dir) for path in found]
