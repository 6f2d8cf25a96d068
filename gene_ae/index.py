"""One index directory, written by `gene-ae embed` and read by `gene-ae search`:

    index.json                  marker + metadata: format, model URI and version, dim, kinds, one entry per record
    index.faiss, vectors.npy    one vector per record (faiss: exact flat up to FLAT_MAX vectors, HNSW above)
    windows.faiss, windows.npz  vectors of the windows of records longer than the model window, with their spans
    sparse.npz                  the exact k-mer index (gene_ae/sparse.py)
    sequences.gae, .npz         the records themselves, compressed (gene_ae/seqstore.py), for re-ranking

Written into a temporary directory renamed into place (shard_tools.files); `--overwrite` replaces only a
directory whose index.json says it is a gene-ae index. index.json records the sha256 of every other file.
Read back, an index is untrusted: `check_meta` checks index.json's schema and `check_files` the parts
against their digests before faiss or numpy parse them, so a damaged index is a one-line error naming the
file, never a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shard_tools.files import atomic_write_bytes, replace_with, sha256_file, temp_dir_for
from shard_tools.text import control_char

# Exact search up to FLAT_MAX vectors; an inverted-file index (IVF) above, tuned on real-data vectors at
# 10^6 in benchmarks/search_bench.py (docs/BENCHMARKS.md). HNSW stays available (--index-kind hnsw).
FLAT_MAX = 100_000
IVF_NPROBE = 64  # lists scanned per query: recall@10 0.967 of exact at p50 4.3 ms at 10^6 x 512 (4,000 lists)
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, 128
FORMAT_NAME, FORMAT_VERSION = "gene-ae-index", 2
INDEX_FILE, META_FILE, VECTORS_FILE = "index.faiss", "index.json", "vectors.npy"
WINDOWS_INDEX_FILE, WINDOWS_FILE = "windows.faiss", "windows.npz"


@dataclass
class Entry:
    """One indexed record (start/end: the span its vector covers, 0-based, end exclusive)."""

    id: str
    length: int
    label: str | None = None
    start: int = 0
    end: int = 0


@dataclass
class IndexMeta:
    model_uri: str
    model_version: str
    dim: int
    kind: str
    windows: bool = False  # window vectors of long records are in windows.faiss
    entries: list[Entry] = field(default_factory=list)
    window: int = 0  # the model window the window vectors cover
    sparse: bool = False  # sparse.npz holds the k-mer index
    sequences: bool = False  # sequences.gae holds the records
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)  # sha256 of every other file, written by write_meta


def build_faiss(vectors: np.ndarray, kind: str = "auto"):
    """(faiss index over L2-normalised vectors by inner product, the kind chosen)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kind = ("flat" if len(vectors) <= FLAT_MAX else "ivf") if kind == "auto" else kind
    if kind == "flat":
        index = faiss.IndexFlatIP(vectors.shape[1])
    elif kind == "ivf":
        index = build_ivf(vectors, ivf_lists(len(vectors)))
        index.nprobe = IVF_NPROBE
        return index, kind
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index kind {kind!r} (auto, flat, ivf, hnsw)")
    index.add(vectors)
    return index, kind


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: about 4 sqrt(n) (4,000 at 10^6, measured better than 1,000: recall@10
    0.967 at 4.3 ms with nprobe 64, against 0.949 at 5.4 ms with nprobe 32; 256 s to train on 2 cores), at
    least 1 and at most n / 39 (faiss wants 39 training points per list)."""
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


def build_ivf(vectors: np.ndarray, nlist: int, seed: int = 0):
    """IndexIVFFlat by inner product, its coarse quantizer trained on at most 64 vectors per list."""
    import faiss

    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(len(vectors), min(len(vectors), 64 * nlist), replace=False))]
    index.train(sample)
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, k] int64, similarities [q, k]), best first, k capped at the index size; missing
    neighbours are index -1. The one order (indices first) every search in gene-ae returns."""
    k = min(k, index.ntotal)
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), max(k, 0)), np.int64), np.zeros((len(queries), max(k, 0)), np.float32)
    sims, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return idx.astype(np.int64), sims


def is_index(path: str | Path) -> bool:
    """Whether `path` is a directory this tool wrote (its index.json names the format)."""
    try:
        return json.loads((Path(path) / META_FILE).read_text()).get("format", FORMAT_NAME) == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def staging_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """A fresh temporary directory beside out_dir; refuses an existing out_dir unless it is an index and
    overwrite is set."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    if out.exists() and not is_index(out):
        raise FileExistsError(f"{out}: not a gene-ae index (no index.json of ours): refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return temp_dir_for(out)


def commit(tmp: Path, out_dir: str | Path) -> Path:
    """Move a finished staging directory into place (replacing the old index in one rename)."""
    replace_with(tmp, out_dir)
    return Path(out_dir)


def write_vectors(directory: Path, vectors: np.ndarray, kind: str, index_file: str = INDEX_FILE) -> str:
    """Save vectors and their faiss index in `directory`; returns the kind built."""
    import faiss

    index, kind = build_faiss(vectors, kind)
    faiss.write_index(index, str(directory / index_file))
    return kind


def write_meta(directory: Path, meta: IndexMeta) -> None:
    """index.json, last: with the sha256 of every file already in the directory."""
    meta.files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != META_FILE}
    atomic_write_bytes(directory / META_FILE, json.dumps(asdict(meta)).encode())


def save(out_dir: str | Path, vectors: np.ndarray, meta: IndexMeta, overwrite: bool = False) -> Path:
    """Vectors and metadata only (no sequences, no k-mer index): the minimal index."""
    tmp = staging_dir(out_dir, overwrite)
    try:
        meta.kind = write_vectors(tmp, vectors, meta.kind)
        np.save(tmp / VECTORS_FILE, np.asarray(vectors, dtype=np.float32))
        write_meta(tmp, meta)
        return commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_meta(index_dir: str | Path) -> IndexMeta:
    d = Path(index_dir)
    for name in (META_FILE, INDEX_FILE):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing: {d} is not a gene-ae index (run `gene-ae embed` first)")
    try:
        raw = json.loads((d / META_FILE).read_bytes())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{d / META_FILE}: not a gene-ae index description (not JSON: {exc})") from None
    return check_meta(raw, d / META_FILE)


# ------------------------------------------------------------------------- reading back untrusted files

_TYPES = {"model_uri": str, "model_version": str, "dim": int, "kind": str, "windows": bool, "window": int,
          "sparse": bool, "sequences": bool, "format": str, "version": int, "entries": list, "files": dict}  # fmt: skip
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Read a piece at a time and checked as read (zstd frame checksums), or not read by search: not hashed on load.
LAZY_FILES = ("sequences.gae", VECTORS_FILE)


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
    if not 1 <= raw.get("version", FORMAT_VERSION) <= FORMAT_VERSION:
        raise bad(f"version {raw['version']}; this gene-ae reads up to {FORMAT_VERSION} (a newer gene-ae wrote it?)")
    if raw.get("dim", 1) < 1 or raw.get("window", 0) < 0:
        raise bad(f"dim {raw.get('dim')}, window {raw.get('window')}")
    for name, digest in raw.get("files", {}).items():
        if Path(name).name != name or name in ("", ".", "..", META_FILE) or not _SHA256.fullmatch(str(digest)):
            raise bad(f"file entry {name!r}: {digest!r}")
    entries = []
    for n, e in enumerate(raw.get("entries", [])):
        if not isinstance(e, dict):
            raise bad(f"entry {n} is not an object")
        rid, label, length = e.get("id"), e.get("label"), e.get("length")
        start, end = e.get("start", 0), e.get("end", 0)
        if not (isinstance(rid, str) and rid and (label is None or isinstance(label, str))):
            raise bad(f"entry {n}: id {rid!r}, label {label!r}")
        if not all(type(x) is int for x in (length, start, end)) or not (0 <= start <= end <= length):
            raise bad(f"entry {n} ({rid!r}): length {length!r}, span {start!r}-{end!r}")
        for what, text in (("id", rid), ("label", label or "")):
            if (c := control_char(text)) is not None:
                raise bad(f"entry {n} ({rid!r}): control character {c!r} in the {what}")
        try:
            entries.append(Entry(**e))
        except TypeError as exc:
            raise bad(f"entry {n}: {exc}") from None
    try:
        return IndexMeta(**{**raw, "entries": entries})
    except TypeError as exc:
        raise bad(str(exc)) from None


def check_files(index_dir: str | Path, meta: IndexMeta) -> None:
    """Every part index.json lists is there and, unless read lazily, has the sha256 it records."""
    d = Path(index_dir)
    for name, digest in meta.files.items():
        path = d / name
        if not path.is_file():
            raise ValueError(f"{path}: missing (index.json lists it): the index is incomplete; rebuild it")
        if name not in LAZY_FILES and sha256_file(path) != digest:
            raise ValueError(
                f"{path}: sha256 differs from the one index.json records (damaged or changed since "
                "`gene-ae embed` wrote it); rebuild the index"
            )


def read_faiss(path: Path):
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ValueError(f"{path}: unreadable faiss index ({str(exc).strip().splitlines()[-1]})") from None


def load(index_dir: str | Path):
    """(faiss index of the record vectors, IndexMeta), both checked."""
    meta = load_meta(index_dir)
    check_files(index_dir, meta)
    path = Path(index_dir) / INDEX_FILE
    dense = read_faiss(path)
    if dense.ntotal != len(meta.entries) or dense.d != meta.dim:
        raise ValueError(
            f"{path}: holds {dense.ntotal} vectors of dim {dense.d}; index.json lists {len(meta.entries)} of dim "
            f"{meta.dim}"
        )
    return dense, meta
