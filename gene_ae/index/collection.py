"""A collection: one index directory, optionally with more index shards inside it, searched as one.

    INDEX_DIR/                 shard 0: an index directory as gene_ae/index/directory.py writes it
    INDEX_DIR/shards.json      the other shards in order, and the positions of records removed since; tied to
                               the index by shard 0's digest and each shard's (a list deleted while shards exist,
                               or copied from another index, is refused: records would come back or vanish)
    INDEX_DIR/shard-00001/     shard 1, a complete index directory of its own, ...

Why shards: a collection grows (`gene-ae embed --append` adds a shard, nothing is rebuilt), records are
removed or replaced by id (`--remove`: tombstones by record position, applied before ranking), and shards can be built
and held apart (on Ray workers, on other machines). Record positions are global: shard s's record j is
offset[s] + j. Every shard is built with the same model, window, stride, k-mer size and features, which
`Collection.open` checks, so search over the shards ranks exactly as one index of all their records would
(gene_ae/search/engine.py merges each candidate list's nearest pieces before voting).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from gene_ae.core.features import FeatureColumns
from gene_ae.core.threads import in_threads
from gene_ae.index.directory import META_FILE, IndexDir, IndexMeta, is_index, read_meta, self_digest
from gene_ae.index.entries import Entries
from shard_tools.files import atomic_write_bytes, remove_stale_temps

SHARDS_FILE = "shards.json"
OPEN_THREADS = 2  # shards opened at once (this project's machines have 2 cores)
SHARDS_FORMAT, SHARDS_VERSION = "gene-ae-shards", 2  # 2: tied to its index ("index", "digests"); 1 still read


@dataclass
class Collection:
    """Opened shards; `removed` marks the global positions of removed records."""

    path: Path
    shards: list[IndexDir]
    offsets: np.ndarray  # global position of each shard's first record, then the total
    removed: np.ndarray

    @classmethod
    def open(cls, directory: str | Path, opener: Callable[[Path], IndexDir] = IndexDir.open) -> Collection:
        """`opener` opens one shard directory: IndexDir.open, or one that reads less (a Ray Serve ingress reads
        only the records and sequences of shards that other replicas search: gene_ae/search/serve_index.py)."""
        d = Path(directory)
        base = opener(d)
        names, removed_positions = read_shards_file(d)
        # opened two at a time: a shard's open is mostly zlib, hashing and numpy, which release Python's lock (a
        # 10^6-gene index's 11 shards: 0.51 -> 0.33 s, a third of a one-query search)
        shards = [base] + in_threads(opener, [d / name for name in names], OPEN_THREADS)
        for name, shard in zip(names, shards[1:]):
            _check_compatible(base, shard, d / name)
        sizes = [len(s.meta.entries) for s in shards]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        removed = np.zeros(int(offsets[-1]), dtype=bool)
        if removed_positions and max(removed_positions) >= removed.size:
            raise ValueError(f"{d / SHARDS_FILE}: removes record {max(removed_positions)} of {removed.size}")
        removed[removed_positions] = True
        return cls(d, shards, offsets, removed)

    @classmethod
    def of(cls, index: IndexDir) -> Collection:
        """One opened index directory as a collection of one shard."""
        n = len(index.meta.entries)
        return cls(index.path, [index], np.array([0, n], dtype=np.int64), np.zeros(n, dtype=bool))

    @property
    def meta(self) -> IndexMeta:
        """Shard 0's description: the model, dims and kinds every shard shares."""
        return self.shards[0].meta

    @cached_property
    def entries(self) -> Entries:
        return Entries.concat([s.meta.entries for s in self.shards])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, record: int) -> tuple[IndexDir, int]:
        """(shard, local position) of a global record position."""
        s = int(np.searchsorted(self.offsets, record, side="right")) - 1
        return self.shards[s], record - int(self.offsets[s])

    def sequence(self, record: int) -> np.ndarray:
        shard, j = self.locate(record)
        if shard.sequences is None:
            raise ValueError(f"{shard.path}: holds no sequences (made by an older gene-ae); give --collection")
        return shard.sequences[j]

    def features(self) -> FeatureColumns:
        """Every record's features, in global order."""
        kinds = self.meta.features
        cols = FeatureColumns(dict(kinds))
        for name in kinds:
            cols.values[name] = np.concatenate([s.features.values[name] for s in self.shards])
        return cols

    def allowed(self, mask: np.ndarray | None = None) -> np.ndarray | None:
        """The records search may return: not removed, and in `mask` when given; None means all."""
        if mask is None and not self.removed.any():
            return None
        keep = ~self.removed
        return keep if mask is None else keep & mask


def read_shards_file(directory: Path) -> tuple[list[str], list[int]]:
    """(shard directory names, removed record positions) from shards.json; ([], []) for a one-shard index. The
    list must be this index's: present wherever shard directories are, naming shard 0's digest and each listed
    shard's (checked here, so every reader and writer refuses a deleted or foreign list alike)."""
    path = directory / SHARDS_FILE
    if not path.is_file():
        stray = sorted(p.name for p in directory.glob("shard-*") if is_index(p))
        if stray:
            raise ValueError(
                f"{path}: missing, but {directory} holds shard {stray[0]}: without its shard list the index would "
                "lose its other shards and bring back removed records; restore shards.json, or rebuild the index"
            )
        return [], []
    try:
        raw = json.loads(path.read_bytes())
        ok = isinstance(raw, dict) and raw.get("format") == SHARDS_FORMAT and raw.get("version") in (1, 2)
        names, removed = raw.get("shards"), raw.get("removed")
        ok = ok and isinstance(names, list) and isinstance(removed, list)
        ok = ok and all(isinstance(n, str) and Path(n).name == n and n.startswith("shard-") for n in names)
        ok = ok and all(type(r) is int and r >= 0 for r in removed) and raw.get("sha256") == _digest(raw)
        ok = ok and (raw["version"] == 1 or _listed_digests(raw, len(names)))
    except ValueError as exc:
        raise ValueError(f"{path}: not a shard list (not JSON: {exc})") from None
    if not ok:
        raise ValueError(f"{path}: not a shard list of this gene-ae, or edited by hand (its digest differs)")
    if raw["version"] >= 2:
        _check_tied(directory, raw["index"], dict(zip(names, raw["digests"])))
    return names, removed


def _listed_digests(raw: dict, n: int) -> bool:
    digests = raw.get("digests")
    return isinstance(raw.get("index"), str) and isinstance(digests, list) and len(digests) == n


def _check_tied(directory: Path, index: str, digests: dict[str, str]) -> None:
    """Refuse a shard list that is not this index's (copied from another), or a listed shard that is not the one
    it lists (replaced by another index's)."""
    if _meta_digest(directory) != index:
        raise ValueError(
            f"{directory / SHARDS_FILE}: the shard list of another index (it names another shard 0): its records "
            "would be searched as this index's; restore this index's own shards.json"
        )
    for name, digest in digests.items():
        if (directory / name).is_dir() and _meta_digest(directory / name) != digest:
            raise ValueError(f"{directory / name}: not the shard {SHARDS_FILE} lists (its index.json differs): "
                             "replaced or copied from another index; restore it or rebuild the index")  # fmt: skip


def _meta_digest(index_dir: Path) -> str:
    """The digest index.json records for itself: the index's identity ('' when unreadable: read_meta says why)."""
    try:
        raw = json.loads((index_dir / META_FILE).read_bytes())
    except (OSError, ValueError):
        return ""
    return str(raw.get("meta_sha256", "")) if isinstance(raw, dict) else ""


LOCK_FILE = ".gene-ae-writer.lock"


@contextlib.contextmanager
def writing(directory: str | Path) -> Iterator[None]:
    """Hold the index's writer lock while a block changes it (append, replace, remove): a second writer is refused
    at once with a one-line error, before it reads or writes anything, instead of both reading the same shard
    list and one of them losing its shard or its removals. The lock is the kernel's (flock): it goes with the
    process, so a killed writer never leaves the index locked."""
    import fcntl

    if not is_index(directory):  # nor a lock file left in a folder that is not an index
        if (Path(directory) / META_FILE).is_file():
            read_meta(directory)  # a damaged index.json: its own one-line error says what is wrong with it
        raise FileNotFoundError(f"{directory}: not a gene-ae index (no index.json of ours; run `gene-ae embed` first)")
    path = Path(directory) / LOCK_FILE
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"{directory}: another gene-ae is changing this index (embed --append, --replace or remove); "
                "try again when it has finished"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_shards_file(directory: Path, names: list[str], removed: Iterable[int]) -> None:
    """shards.json for the index in `directory`, whose shard 0 and listed shards are written (their digests tie the
    list to them)."""
    raw = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "index": _meta_digest(directory), "shards": names,
           "digests": [_meta_digest(directory / n) for n in names], "removed": sorted(map(int, removed))}  # fmt: skip
    raw["sha256"] = _digest(raw)
    atomic_write_bytes(directory / SHARDS_FILE, json.dumps(raw, indent=1).encode())


def next_shard_name(directory: Path) -> str:
    """A name no listed shard has (a shard left unlisted by a killed append is overwritten). The shard list is
    written first if the index has none, so that an append killed before it lists its shard leaves a list."""
    names, removed = read_shards_file(directory)
    if not (directory / SHARDS_FILE).is_file():
        write_shards_file(directory, names, removed)
    used = {int(n.split("-")[1]) for n in names}
    name = f"shard-{max(used, default=0) + 1:05d}"
    remove_stale_temps(directory / name)
    leftover = directory / name
    if leftover.is_dir() and is_index(leftover):  # written by an append killed before it listed it
        shutil.rmtree(leftover)
    return name


def _digest(raw: dict) -> str:
    return self_digest(raw, "sha256")


def _check_compatible(base: IndexDir, shard: IndexDir, where: Path) -> None:
    def same(m: IndexMeta) -> tuple:
        settings = {k: v for k, v in m.settings.items() if k not in ("kind", "batch_bases", "batch_size")}
        return m.model_uri, m.dim, m.window, m.features, json.dumps(settings, sort_keys=True)

    if same(base.meta) != same(shard.meta):
        raise ValueError(
            f"{where}: built with other settings than the index it belongs to (model, dim, window, features, "
            "k-mer size, stride or windows differ); rebuild it"
        )
