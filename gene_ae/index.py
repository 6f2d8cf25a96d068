"""A saved vector index: faiss over L2-normalised embeddings, plus ids, lengths, labels and the model used.

Exact inner product (cosine) for collections up to `FLAT_MAX` vectors; HNSW above, where exact search
costs more than a user waits for. Saved atomically: a temporary directory renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# Exact search up to a million vectors (~100 ms a query on 2 cores): HNSW at M 32 / efSearch 128 recalled only
# 0.35-0.54 of the exact top 10 at 10^5 vectors in benchmarks/search_bench.py, so it is for larger sets only.
FLAT_MAX = 1_000_000
INDEX_FILE, META_FILE, VECTORS_FILE = "index.faiss", "index.json", "vectors.npy"


@dataclass
class Entry:
    """One indexed vector: a whole record, or a window of one (start/end in bases, 0-based, end exclusive)."""

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
    windows: bool = False
    entries: list[Entry] = field(default_factory=list)


def build_faiss(vectors: np.ndarray, kind: str = "auto"):
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kind = ("flat" if len(vectors) <= FLAT_MAX else "hnsw") if kind == "auto" else kind
    if kind == "flat":
        index = faiss.IndexFlatIP(vectors.shape[1])
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        raise ValueError(f"unknown index kind {kind!r} (auto, flat, hnsw)")
    index.add(vectors)
    return index, kind


def save(out_dir: str | Path, vectors: np.ndarray, meta: IndexMeta, overwrite: bool = False) -> Path:
    import faiss

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    index, meta.kind = build_faiss(vectors, meta.kind)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        np.save(tmp / VECTORS_FILE, np.asarray(vectors, dtype=np.float32))
        (tmp / META_FILE).write_text(json.dumps(asdict(meta)))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load(index_dir: str | Path):
    import faiss

    d = Path(index_dir)
    if not (d / META_FILE).is_file() or not (d / INDEX_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a gene-ae index (run `gene-ae embed` first)")
    raw = json.loads((d / META_FILE).read_text())
    raw["entries"] = [Entry(**e) for e in raw["entries"]]
    return faiss.read_index(str(d / INDEX_FILE)), IndexMeta(**raw)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, k] int64, similarities [q, k]), best first, k capped at the index size; missing
    neighbours are index -1. The one order (indices first) every search in gene-ae returns."""
    k = min(k, index.ntotal)
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), max(k, 0)), np.int64), np.zeros((len(queries), max(k, 0)), np.float32)
    sims, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return idx.astype(np.int64), sims
