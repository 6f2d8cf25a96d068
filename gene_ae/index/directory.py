"""The index directory: the one place that writes it (`write_index`) and opens it (`IndexDir.open`).

    index.json                  marker + metadata: format, model URI and version, dims, the number of records,
                                the sha256 of every other file, and its own sha256 (`meta_sha256`)
    entries.npz                 each record's id, length, label and span, as columns (gene_ae/index/entries.py)
    index.faiss                 one vector per record: faiss (codec: f32, f16, sq8, pq64 or signs; indexes before
                                stop 26 also kept float16 copies in vectors.npy, no longer read)
    windows.faiss, windows.npz  vectors of the windows of records longer than the model window, with their spans
    kmers.npz, kmer_postings.npy  the exact k-mer index (gene_ae/index/kmer_index.py): its postings memory-mapped
    features.npz                the user's features of each record, typed (gene_ae/core/features.py)
    sequences.gae, .npz         the records themselves, compressed (gene_ae/index/seqstore.py), for re-ranking
    bags.npz                    the model's k-mer bag tables (gene_ae/core/bagvec.py), in the first shard of an index
                                built --no-kmers with a bag-only model: a query's vector computed without torch

Written into a temporary sibling renamed into place (shard_tools.files.atomic_dir); an existing directory
is replaced only when asked and only if its index.json says it is a gene-ae index. Read back, an index is
untrusted: index.json's schema and its own digest are checked, then every part against the digest it
records, before faiss or numpy parse them, so a damaged or hand-edited index is a one-line error naming the
file, never a traceback. Indexes of an older format get a message saying how to rebuild them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from gene_ae.core.bagvec import FILE as BAGS_FILE
from gene_ae.core.bagvec import BagTables
from gene_ae.core.features import FILE as FEATURES_FILE
from gene_ae.core.features import KINDS, FeatureColumns
from gene_ae.index import vectors
from gene_ae.index.entries import FILE as ENTRIES_FILE
from gene_ae.index.entries import Entries, Entry
from gene_ae.index.kmer_index import KmerIndex
from gene_ae.index.seqstore import SequenceStore, SequenceWriter
from shard_tools.cpus import usable_cpus
from shard_tools.files import atomic_dir, atomic_write_bytes, sha256_file
from shard_tools.text import control_char

FORMAT_NAME, FORMAT_VERSION = "gene-ae-index", 9
# 3: one k-mer hash, index.json digest; 4: k-mer postings mapped; 5: records as columns in entries.npz, and only the
# k-mer counts over 1 stored; 6: k-mer postings as nibble varints; 7: the k-mer segments stored in MinHash order,
# postings with runs (an older gene-ae would read those postings as plain gaps: the version keeps it from trying);
# 8: integer columns in their fewest bytes and the k-mer rows' lengths in a byte (gene_ae/index/compact.py), which v7
# readers would take for damage; 9: the record ids and labels in zstd blocks (gene_ae/index/entries.py), which v8
# readers would call missing (v6 to v8 indexes read as before)
OLDEST_READ = 6  # v6 differs only in its postings (no segment order, no runs), which KmerIndex still reads
META_FILE, INDEX_FILE, VECTORS_FILE = "index.json", "index.faiss", "vectors.npy"
WINDOWS_INDEX_FILE, WINDOWS_FILE = "windows.faiss", "windows.npz"
# Read a piece at a time and checked as read (zstd frame checksums; the k-mer postings' every segment checked in
# range, their sizes on open), or not read by search: not hashed on open, whose cost would grow with the index.
LAZY_FILES = ("sequences.gae", VECTORS_FILE, KmerIndex.POSTINGS_FILE)
# Read only when a search asks for vectors, and hashed then (IndexDir.dense / .windows), not on open.
VECTOR_FILES = (INDEX_FILE, WINDOWS_INDEX_FILE, WINDOWS_FILE, BAGS_FILE)


@dataclass(kw_only=True)
class IndexMeta:
    model_uri: str
    model_version: str
    dim: int  # the search vector's size
    kind: str  # the faiss index kind of the record vectors
    windows: bool = False  # window vectors of long records are in windows.faiss
    entries: Entries = field(default_factory=lambda: Entries.of([]))  # in entries.npz; index.json: `records`
    window: int = 0  # the model window the window vectors cover
    settings: dict = field(default_factory=dict)  # the BuildConfig it was built with, resolved (k, stride)
    sparse: bool = False  # kmers.npz and its postings hold the k-mer index
    sequences: bool = False  # sequences.gae holds the records
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    features: dict[str, str] = field(default_factory=dict)  # the user's features in features.npz: name -> kind
    files: dict[str, str] = field(default_factory=dict)  # sha256 of every other file
    meta_sha256: str = ""  # sha256 of this description without this field


def is_index(path: str | Path) -> bool:
    """Whether `path` is a directory this tool wrote (its index.json names the format)."""
    try:
        return json.loads((Path(path) / META_FILE).read_text()).get("format", FORMAT_NAME) == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def check_replaceable(out_dir: str | Path, overwrite: bool) -> None:
    """Refuse an existing out_dir unless it is a gene-ae index and overwrite is set; checked before any work."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    if out.exists() and not is_index(out):
        raise FileExistsError(f"{out}: not a gene-ae index (no index.json of ours): refusing to replace it")


class IndexWriter:
    """Writes the parts of one index into its staging directory; `finish` writes index.json last."""

    def __init__(self, directory: Path, threads: int = 0):
        self.dir = directory
        self.threads = threads or usable_cpus()  # compressing the sequence blocks (a Ray shard task has one CPU)

    def sequences(self) -> SequenceWriter:
        return SequenceWriter(self.dir, threads=self.threads)

    def record_vectors(self, matrix: np.ndarray, kind: str, codec: str = "f32") -> str:
        """The record vectors in their faiss index; returns the kind built. No second copy: the provenance check
        reads a few back from their codes (IndexDir.record_vectors); float16 copies took 1 GiB at 10^6 genes."""
        matrix = _finite(matrix, "record vectors")
        index, kind = vectors.build_faiss(matrix, kind, codec)
        vectors.write_faiss(index, self.dir / INDEX_FILE)
        return kind

    def window_vectors(self, matrix: np.ndarray, spans: np.ndarray, kind: str, codec: str = "f32") -> None:
        """Window vectors with their (owner record, start, end) spans."""
        index, _ = vectors.build_faiss(_finite(matrix, "window vectors"), kind, codec)
        vectors.write_faiss(index, self.dir / WINDOWS_INDEX_FILE)
        np.savez(self.dir / WINDOWS_FILE, owner=spans[:, 0], start=spans[:, 1], end=spans[:, 2])

    def kmers(self, kmer_index: KmerIndex) -> None:
        kmer_index.save(self.dir)

    def features(self, columns: FeatureColumns) -> None:
        columns.save(self.dir)

    def bag_tables(self, tables: BagTables) -> None:
        tables.save(self.dir)

    def finish(self, meta: IndexMeta, rows: list[Entry] | None = None) -> None:
        """entries.npz (of `rows` when given), then index.json last: with the sha256 of every file already in the
        directory and its own."""
        if rows is not None:
            meta.entries = Entries.of(rows)
        meta.entries.save(self.dir)
        meta.files = {p.name: sha256_file(p) for p in sorted(self.dir.iterdir()) if p.is_file() and p.name != META_FILE}
        raw = {f.name: getattr(meta, f.name) for f in fields(meta) if f.name != "entries"}
        raw["records"] = len(meta.entries)
        raw["meta_sha256"] = meta_digest(raw)
        atomic_write_bytes(self.dir / META_FILE, json.dumps(raw).encode())


@contextlib.contextmanager
def write_index(out_dir: str | Path, overwrite: bool = False) -> Iterator[IndexWriter]:
    """An IndexWriter on a staging directory that replaces out_dir when the block ends cleanly and is
    removed on any error (Ctrl-C included), so out_dir is the old index or the new one, never half. An index
    replaced (overwrite) is held under its writer lock meanwhile, as an append or a remove holds it: one of
    them running is refused in one line, rather than its records vanishing with the old directory."""
    from gene_ae.index.collection import writing  # collection.py builds on this module

    check_replaceable(out_dir, overwrite)
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    replacing = writing(out_dir) if overwrite and is_index(out_dir) else contextlib.nullcontext()
    with replacing, atomic_dir(out_dir) as tmp:
        yield IndexWriter(tmp)


@dataclass
class IndexDir:
    """An opened index directory, checked: what search needs of it. The vector parts (index.faiss, windows.faiss)
    are read, and checked against their digests, only when first used, so a search that reads only the k-mers
    never pays for them."""

    path: Path
    meta: IndexMeta
    _dense: object | None = None  # faiss index of the record vectors (IndexDir.dense)
    _windows: object | None = None
    _spans: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the windows' owner record, start, end
    kmers: KmerIndex | None = None
    sequences: SequenceStore | None = None
    features: FeatureColumns = field(default_factory=FeatureColumns)
    lazy: bool = False  # the vector parts are still on disk (IndexDir.open)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def lengths(self) -> np.ndarray:
        """Every record's length (int64)."""
        return self.meta.entries.length

    @property
    def dense(self):
        """The record vectors' faiss index (read on first use)."""
        self._loaded()
        return self._dense

    @dense.setter
    def dense(self, index) -> None:
        self._dense = index

    @property
    def windows(self):
        """The window vectors' faiss index, None when the index has none (read on first use)."""
        self._loaded()
        return self._windows

    @windows.setter
    def windows(self, index) -> None:
        self._windows = index

    @property
    def window_owner(self) -> np.ndarray:
        return self._window_spans()[0]

    @property
    def window_start(self) -> np.ndarray:
        return self._window_spans()[1]

    @property
    def window_end(self) -> np.ndarray:
        return self._window_spans()[2]

    def _window_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._loaded()
        if self._spans is None:
            return (np.zeros(0, np.int64),) * 3
        return self._spans

    def bag_tables(self) -> BagTables | None:
        """The model's bag tables (bags.npz) when the index holds them, checked against their digest; else None."""
        digest = self.meta.files.get(BAGS_FILE)
        if digest is None:
            return None
        check_digest(self.path / BAGS_FILE, digest)
        return BagTables.load(self.path)

    def record_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of these records, decoded from the faiss index (as exact as its codec: within half
        a step of 1/255 of vectors.SQ8_RANGE's span a value for 8-bit codes)."""
        return vectors.reconstruct(self.dense, np.asarray(rows, dtype=np.int64))

    def as_stored(self, matrix: np.ndarray) -> np.ndarray:
        """These vectors as the record index would store them (coded and decoded by its codec), so that a fresh
        vector compares with a stored one without the codec's error (64-byte codes lose more than 8-bit ones)."""
        return vectors.requantised(self.dense, matrix)

    def _loaded(self) -> None:
        """The vector parts read, once, whichever of a search's threads asks first."""
        if self.lazy:
            with self._lock:
                if self.lazy:
                    self._load_vectors()
                    self.lazy = False  # after the parts are set: another thread reads them once this is False

    def _load_vectors(self) -> None:
        d, meta = self.path, self.meta
        check_digest(d / INDEX_FILE, meta.files.get(INDEX_FILE))
        dense = vectors.read_faiss(d / INDEX_FILE)
        if dense.ntotal != len(meta.entries) or dense.d != meta.dim:
            raise ValueError(
                f"{d / INDEX_FILE}: holds {dense.ntotal} vectors of dim {dense.d}; index.json lists "
                f"{len(meta.entries)} of dim {meta.dim}"
            )
        self._dense = dense
        if meta.windows and (d / WINDOWS_INDEX_FILE).is_file():
            check_digest(d / WINDOWS_INDEX_FILE, meta.files.get(WINDOWS_INDEX_FILE))
            check_digest(d / WINDOWS_FILE, meta.files.get(WINDOWS_FILE))
            self._windows = vectors.read_faiss(d / WINDOWS_INDEX_FILE)
            with np.load(d / WINDOWS_FILE) as spans:
                self._spans = (spans["owner"], spans["start"], spans["end"])

    @classmethod
    def open(cls, directory: str | Path) -> IndexDir:
        """The index in `directory`: its description and records checked, the k-mer index and sequences opened
        (their large parts mapped or read a block at a time), the vector parts left for first use."""
        d = Path(directory)
        meta = read_meta(d)
        check_files(d, meta)
        opened = cls(d, meta, lazy=True)
        if meta.sparse:
            opened.kmers = KmerIndex.load(d)
        if meta.features:
            opened.features = FeatureColumns.load(d)
            if opened.features.kinds != meta.features or len(opened.features) != len(meta.entries):
                raise ValueError(f"{d / FEATURES_FILE}: does not match index.json's features; rebuild the index")
        if meta.sequences:
            opened.sequences = SequenceStore(d)
            if len(opened.sequences) != len(meta.entries):
                raise ValueError(
                    f"{d / META_FILE}: lists {len(meta.entries)} records, the sequence store holds "
                    f"{len(opened.sequences)}; rebuild the index"
                )
        return opened


def read_meta(index_dir: str | Path) -> IndexMeta:
    """index.json as IndexMeta: present, JSON, of this format and version, its own digest right; with the
    records of entries.npz, checked against the digest index.json records for it."""
    d = Path(index_dir)
    for name in (META_FILE, INDEX_FILE):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing: {d} is not a gene-ae index (run `gene-ae embed` first)")
    try:
        raw = json.loads((d / META_FILE).read_bytes())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{d / META_FILE}: not a gene-ae index description (not JSON: {exc})") from None
    meta = check_meta(raw, d / META_FILE)
    path = d / ENTRIES_FILE
    if ENTRIES_FILE not in meta.files or not path.is_file():
        raise ValueError(f"{path}: missing (index.json lists it): the index is incomplete; rebuild it")
    data = path.read_bytes()  # hashed and parsed from these very bytes (the ids when first asked for)
    if hashlib.sha256(data).hexdigest() != meta.files[ENTRIES_FILE]:
        raise ValueError(f"{path}: sha256 differs from the one index.json records (damaged or changed); rebuild it")
    meta.entries = Entries.load(d, raw.get("records", 0), data)
    return meta


_TYPES = {"model_uri": str, "model_version": str, "dim": int, "kind": str, "windows": bool, "window": int,
          "sparse": bool, "sequences": bool, "format": str, "version": int, "records": int, "files": dict,
          "meta_sha256": str, "features": dict, "settings": dict}  # fmt: skip
_SHA256 = re.compile(r"[0-9a-f]{64}")


def self_digest(raw: dict, field: str) -> str:
    """The sha256 of a JSON object without its own digest field: how index.json and shards.json vouch for
    themselves (one definition, so a file written by one is read by the other's rule)."""
    body = {k: v for k, v in raw.items() if k != field}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def meta_digest(raw: dict) -> str:
    return self_digest(raw, "meta_sha256")


def check_meta(raw: object, path: Path) -> IndexMeta:
    """index.json's content as IndexMeta, or ValueError naming `path` and the first fault."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{path}: not a gene-ae index description ({what})")

    if not isinstance(raw, dict):
        raise bad(f"a JSON {type(raw).__name__}, not an object")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise bad(f"format {raw.get('format')!r}")
    for key, kind in _TYPES.items():
        if key in raw and type(raw[key]) is not kind:
            raise bad(f"{key!r} is {type(raw[key]).__name__}, not {kind.__name__}")
    version = raw.get("version", 1)
    if version > FORMAT_VERSION:
        raise bad(f"version {version}; this gene-ae reads up to {FORMAT_VERSION} (a newer gene-ae wrote it?)")
    if version < OLDEST_READ:
        raise ValueError(
            f"{path}: index format v{version} was written by an older gene-ae (this one reads v{OLDEST_READ} to "
            f"v{FORMAT_VERSION}): "
            "rebuild it with `gene-ae embed --model MODEL --input COLLECTION --out DIR --overwrite`"
        )
    if raw.get("meta_sha256") != meta_digest(raw):
        raise bad("its content differs from the digest it records: edited by hand or damaged; rebuild the index")
    if raw.get("dim", 1) < 1 or raw.get("window", 0) < 0 or raw.get("records", 0) < 0:
        raise bad(f"dim {raw.get('dim')}, window {raw.get('window')}, records {raw.get('records')}")
    for name, kind in raw.get("features", {}).items():
        if kind not in KINDS or not isinstance(name, str) or control_char(name) is not None:
            raise bad(f"feature {name!r}: kind {kind!r}")
    for name, digest in raw.get("files", {}).items():
        if Path(name).name != name or name in ("", ".", "..", META_FILE) or not _SHA256.fullmatch(str(digest)):
            raise bad(f"file entry {name!r}: {digest!r}")
    body = {k: v for k, v in raw.items() if k != "records"}
    try:
        return IndexMeta(**body)
    except TypeError as exc:
        raise bad(str(exc)) from None


def check_files(index_dir: str | Path, meta: IndexMeta, every: bool = False) -> None:
    """Every part index.json lists is there and, unless read lazily or already checked by read_meta (entries.npz;
    `every`: all of them), has the sha256 it records."""
    d = Path(index_dir)
    for name, digest in meta.files.items():
        path = d / name
        if not path.is_file():
            raise ValueError(f"{path}: missing (index.json lists it): the index is incomplete; rebuild it")
        if every or name not in LAZY_FILES + VECTOR_FILES + (ENTRIES_FILE,):  # read_meta hashed entries.npz
            check_digest(path, digest)


def check_digest(path: Path, digest: str | None) -> None:
    """`path` has the sha256 index.json records for it (a part it does not list is not checked)."""
    if digest is not None and sha256_file(path) != digest:
        raise ValueError(
            f"{path}: sha256 differs from the one index.json records (damaged or changed since "
            "`gene-ae embed` wrote it); rebuild the index"
        )


def _finite(matrix: np.ndarray, what: str) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if not np.isfinite(matrix).all():
        rows = np.flatnonzero(~np.isfinite(matrix).all(1))
        raise ValueError(
            f"the model gave non-finite {what} (NaN or inf) for {rows.size:,} rows (first: row {rows[0]}): "
            "its weights are damaged; retrain or use another model version"
        )
    return matrix
