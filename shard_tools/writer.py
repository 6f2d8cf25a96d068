"""Records -> blocks -> tar shards -> manifest.json, written atomically.

Everything goes to a hidden sibling directory (shard_tools.files.atomic_dir) with shards under `.tar.tmp`
names; shards are renamed when closed, the manifest is written last and the directory renamed into place,
so an interrupted run never leaves a directory with a manifest or a shard that looks complete. An existing
OUT_DIR is replaced only when asked and only when it is a shard directory this tool wrote.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np

from shard_tools.alphabet import TOKENS
from shard_tools.cpus import usable_cpus
from shard_tools.files import atomic_dir, sha256_file
from shard_tools.format import BLOCK_EXT, FORMAT_NAME, FORMAT_VERSION, MAX_KEY_LEN, encode_block, sanitise_key
from shard_tools.manifest import HIST_EDGES, check_replaceable, length_bin
from shard_tools.options import Range
from shard_tools.record import Record

SPLITS = ("train", "val")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _leave_signals_to_parent() -> None:
    """Pool workers ignore Ctrl-C and SIGTERM sent to the whole group: the parent alone cleans up and
    shuts the pool down, and the user sees its one line, not a traceback from every worker. On Linux a
    worker is killed with its parent, so a SIGKILLed run leaves no orphans compressing on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class ShardConfig:
    val_fraction: float = 0.05
    shard_bytes: int = 64 * 2**20  # target compressed size of one tar shard
    block_bases: int = 4 * 2**20  # bases per block; longer records are stored in parts of this size
    level: int | None = None  # zstd level; None picks per block (see format.choose_level)
    min_length: int = 1
    dedup: bool = False
    workers: int = 1
    seed: str = "gene-ae"  # salts the split hash; same seed, same split

    LIMITS: ClassVar[dict[str, Range]] = {
        "val_fraction": Range(0, 1, high_open=True),
        "shard_bytes": Range(1),
        "block_bases": Range(1),
        "level": Range(1, 22),
        "min_length": Range(0),
        "workers": Range(1),
    }

    def __post_init__(self) -> None:
        for name, limit in self.LIMITS.items():
            if getattr(self, name) is not None:
                limit.check(name, getattr(self, name))


def split_of(tokens: np.ndarray, val_fraction: float, seed: str) -> str:
    """Deterministic split by sequence content, so identical sequences always share a split."""
    digest = hashlib.blake2b(tokens.tobytes(), digest_size=8, key=seed.encode()[:64]).digest()
    return "val" if int.from_bytes(digest, "little") / 2**64 < val_fraction else "train"


@dataclass
class SplitStats:
    shards: list[dict] = field(default_factory=list)
    samples: int = 0
    sequences: int = 0
    parts: int = 0
    bases: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * (len(HIST_EDGES) - 1))

    def manifest(self) -> dict:
        return {
            "shards": self.shards,
            "samples": self.samples,
            "sequences": self.sequences,
            "parts": self.parts,
            "bases": self.bases,
            "length_histogram": self.hist,
        }


class _ShardSink:
    """Appends encoded blocks to numbered tar shards of one split, rolling over at the target size."""

    def __init__(self, root: Path, split: str, shard_bytes: int, stats: SplitStats):
        self.dir = root / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split, self.shard_bytes, self.stats = split, shard_bytes, stats
        self.tar: BinaryIO | None = None
        self.path: Path | None = None
        self.current: dict = {}

    def add(self, key: str, block: bytes, n_records: int, n_bases: int) -> None:
        if self.tar is None:
            name = f"shard-{len(self.stats.shards):06d}.tar"
            self.path = self.dir / (name + ".tmp")
            self.tar = open(self.path, "wb")
            self.current = {"name": f"{self.split}/{name}", "samples": 0, "parts": 0, "bases": 0}
        # Plain ustar members, written by hand: tarfile pads every archive to 10 KiB, which would
        # double a small genome's footprint.
        info = tarfile.TarInfo(f"{key}.{BLOCK_EXT}")
        info.size, info.mtime, info.mode = len(block), 0, 0o644
        self.tar.write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
        self.tar.write(block + b"\0" * (-len(block) % tarfile.BLOCKSIZE))
        self.current["samples"] += 1
        self.current["parts"] += n_records
        self.current["bases"] += n_bases
        if self.tar.tell() >= self.shard_bytes:
            self.close()

    def close(self) -> None:
        if self.tar is None:
            return
        # No end-of-archive zero blocks: GNU tar and Python's tarfile read to the end without them, the
        # manifest's sha256 catches truncation, and they would cost 1 KiB, 0.2 bits/base of a phage genome.
        self.tar.close()
        assert self.path is not None
        final = self.path.with_suffix("")
        self.path.rename(final)
        self.current["bytes"] = final.stat().st_size
        self.current["sha256"] = sha256_file(final)
        self.stats.shards.append(self.current)
        self.tar = None


@dataclass
class Summary:
    records: int = 0
    bases: int = 0
    skipped: int = 0
    short: int = 0
    duplicates: int = 0
    duplicate_ids: int = 0  # records whose id an earlier record already had (both kept, keys differ)
    input_bytes: int = 0
    output_bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        bpb = 8 * self.output_bytes / max(self.bases, 1)
        mbs = self.input_bytes / 1e6 / max(self.seconds, 1e-9)
        return (
            f"{self.records:,} records, {self.bases:,} bases, {self.skipped:,} skipped (invalid), "
            f"{self.short:,} too short, {self.duplicates:,} duplicates dropped; "
            f"{bpb:.3f} bits/base on disk; {mbs:.1f} MB/s of input files as stored"
        )


class ShardWriter:
    """Cut records into blocks per split, compress blocks (in parallel) and write shards in order."""

    def __init__(self, out_dir: Path, cfg: ShardConfig, overwrite: bool = False):
        self.out_dir, self.cfg, self.overwrite = Path(out_dir), cfg, overwrite
        check_replaceable(self.out_dir, overwrite)
        self.stats = {s: SplitStats() for s in SPLITS}
        self.summary = Summary()
        self._keys: dict[str, int] = {}  # sanitised base -> last suffix number tried
        self._used: set[str] = set()
        self._seen: set[bytes] = set()
        self._ids: set[str] = set()
        self.first_duplicate_id: str | None = None

    def _unique_key(self, record_id: str) -> str:
        """sanitise_key made unique: a clash gets _2, _3, ... (base shortened to stay within MAX_KEY_LEN)."""
        base = sanitise_key(record_id)
        key, n = base, self._keys.get(base, 1)
        while key in self._used:  # ids "x", "x", "x_2" must not give "x_2" twice
            n += 1
            suffix = f"_{n}"
            key = base[: MAX_KEY_LEN - len(suffix)] + suffix
        self._keys[base] = n
        self._used.add(key)
        return key

    def _count_duplicate_id(self, record_id: str) -> None:
        """Two records with one id stay two records (their keys differ); the count is reported once."""
        if record_id in self._ids:
            self.summary.duplicate_ids += 1
            self.first_duplicate_id = self.first_duplicate_id or record_id
        else:
            self._ids.add(record_id)

    def _blocks(self, records: Iterable[Record]) -> Iterator[tuple[str, list[tuple[dict, np.ndarray]]]]:
        """Group record parts into blocks of about block_bases, one open block per split."""
        cfg = self.cfg
        pending: dict[str, list] = {s: [] for s in SPLITS}
        filled = dict.fromkeys(SPLITS, 0)
        for rec in records:
            n = int(rec.tokens.size)
            if n < cfg.min_length:
                self.summary.short += 1
                continue
            if cfg.dedup:
                digest = hashlib.blake2b(rec.tokens.tobytes(), digest_size=16).digest()
                if digest in self._seen:
                    self.summary.duplicates += 1
                    continue
                self._seen.add(digest)
            split = split_of(rec.tokens[: cfg.block_bases], cfg.val_fraction, cfg.seed)
            st = self.stats[split]
            st.sequences += 1
            st.bases += n
            st.hist[length_bin(n)] += 1
            self.summary.records += 1
            self.summary.bases += n
            self._count_duplicate_id(rec.id)
            meta = {"id": rec.id, "key": self._unique_key(rec.id), "desc": rec.description, "len": n, **rec.fields}
            if rec.features:  # the declared features, typed, None for a value the record lacks (docs/INPUTS.md)
                meta["features"] = rec.features
            n_parts = max(1, -(-n // cfg.block_bases))
            for i in range(n_parts):
                chunk = rec.tokens[i * cfg.block_bases : (i + 1) * cfg.block_bases]
                part = dict(meta, len=int(chunk.size), part=i, parts=n_parts, offset=i * cfg.block_bases)
                pending[split].append((part, chunk))
                filled[split] += chunk.size
                if filled[split] >= cfg.block_bases:
                    yield split, pending[split]
                    pending[split], filled[split] = [], 0
        for split in SPLITS:
            if pending[split]:
                yield split, pending[split]

    def write(self, records: Iterable[Record], provenance: dict) -> dict:
        """Write all records; returns the manifest. On any exception nothing is left behind."""
        start = time.perf_counter()
        with atomic_dir(self.out_dir) as tmp:
            sinks = {s: _ShardSink(tmp, s, self.cfg.shard_bytes, self.stats[s]) for s in SPLITS}
            self._encode_all(records, sinks)
            for sink in sinks.values():
                sink.close()
            self.summary.seconds = time.perf_counter() - start
            self.summary.output_bytes = sum(sh["bytes"] for st in self.stats.values() for sh in st.shards)
            manifest = self._manifest(provenance)
            (tmp / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))  # last: marks complete
        return manifest

    def _encode_all(self, records: Iterable[Record], sinks: dict[str, _ShardSink]) -> None:
        cfg = self.cfg
        workers = min(cfg.workers, usable_cpus())  # more processes than CPUs only add start-up and switching
        counter = dict.fromkeys(SPLITS, 0)

        def emit(split: str, parts: list, block: bytes) -> None:
            key = f"{split}-{counter[split]:08d}"
            counter[split] += 1
            self.stats[split].samples += 1
            self.stats[split].parts += len(parts)
            sinks[split].add(key, block, len(parts), sum(int(t.size) for _, t in parts))

        if workers <= 1:
            for split, parts in self._blocks(records):
                emit(split, parts, encode_block(parts, cfg.level, cfg.block_bases))
            return
        with ProcessPoolExecutor(workers, initializer=_leave_signals_to_parent) as pool:
            queue: list[tuple[str, list, Future]] = []
            try:
                for split, parts in self._blocks(records):
                    queue.append((split, parts, pool.submit(encode_block, parts, cfg.level, cfg.block_bases)))
                    while len(queue) > 2 * workers:  # bounded memory, output order kept
                        s, p, fut = queue.pop(0)
                        emit(s, p, fut.result())
                for s, p, fut in queue:
                    emit(s, p, fut.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)  # an interrupted run stops now, not after the queued blocks
                raise

    def _manifest(self, provenance: dict) -> dict:
        from shard_tools import __version__

        self.summary.skipped = len(provenance.get("skipped", []))
        # name -> numeric | categorical, each in every sample's "features"; left out when none is declared, so
        # a run without --feature-column writes the manifest it wrote before features existed
        features = {"features": dict(provenance["features"])} if provenance.get("features") else {}
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "alphabet": list(TOKENS),
            "member": BLOCK_EXT,
            "length_histogram_edges": HIST_EDGES,
            "compression": {
                "codec": "zstd",
                "level": self.cfg.level or "auto",
                "long_distance_matching": True,
                "payload_codecs": ["u8", "2bit"],
            },
            "tool": {"name": "gene-ae", "version": __version__},
            "command": provenance.get("command", sys.argv),
            "inputs": provenance.get("inputs", []),
            "config": asdict(self.cfg),
            "skipped": provenance.get("skipped", [])[:100],
            **features,
            "summary": asdict(self.summary),
            "splits": {s: st.manifest() for s, st in self.stats.items()},
        }
