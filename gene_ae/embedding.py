"""Building an index directory from a stream of records: sequences stored, records and their windows
embedded (in-process or with Ray Data), k-mers counted, one batch at a time."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gene_ae import index
from gene_ae.index import Entry, IndexMeta
from gene_ae.records import InputRecord
from gene_ae.seqstore import SequenceWriter
from gene_ae.sparse import SparseBuilder, SparseConfig

Embed = Callable[[list[np.ndarray]], np.ndarray]  # token arrays -> L2-normalised vectors


def embed_local(encoder, pieces: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Encoder.embed_tokens in chunks, with a progress bar on a terminal."""
    chunk = max(batch_size * 8, 256)
    iterator = range(0, len(pieces), chunk)
    if sys.stderr.isatty():
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="embed", unit="chunk", file=sys.stderr)
    out = [encoder.embed_tokens(pieces[start : start + chunk], batch_size) for start in iterator]
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def embed_with_ray(model_uri: str, pieces: list[np.ndarray], batch_size: int, workers: int) -> np.ndarray:
    """The same embedding as Ray Data map_batches (joins the cluster when RAY_ADDRESS is set)."""
    import ray

    from shard_tools.alphabet import decode

    class EmbedBatch:
        def __init__(self, uri: str):
            from gene_ae.encoder import Encoder

            self.encoder = Encoder.load(uri)

        def __call__(self, batch: dict) -> dict:
            return {"i": batch["i"], "vec": self.encoder.embed(list(batch["seq"]), batch_size)}

    if not ray.is_initialized():
        ray.init(include_dashboard=False)  # joins the cluster when RAY_ADDRESS is set, else starts a local Ray
    ds = ray.data.from_items([{"i": i, "seq": decode(p)} for i, p in enumerate(pieces)])
    rows = ds.map_batches(
        EmbedBatch, fn_constructor_args=(model_uri,), batch_size=batch_size, concurrency=workers
    ).take_all()
    out = np.zeros((len(pieces), len(rows[0]["vec"])), dtype=np.float32)
    for row in rows:
        out[row["i"]] = row["vec"]
    return out


@dataclass
class BuildConfig:
    kind: str = "auto"  # faiss index kind: auto, flat, hnsw
    windows: bool = True  # also index windows of records longer than the model window
    stride: int = 0  # window stride; 0 = half a window
    sparse: SparseConfig = field(default_factory=SparseConfig)
    batch_bases: int = 1 << 21  # records are read, embedded and stored this many bases at a time
    batch_size: int = 64  # encoder batch size


def build_index(
    records: Iterable[InputRecord],
    embed: Embed,
    model: ModelInfo,
    out_dir: str | Path,
    cfg: BuildConfig,
    overwrite: bool = False,
    source: str = "input",
) -> IndexMeta:
    """Stream records into an index directory (gene_ae/index.py): memory is one batch of records plus the
    index itself (vectors, k-mer postings), never the collection's sequences."""
    tmp = index.staging_dir(out_dir, overwrite)
    try:
        meta = _stream(records, embed, model, tmp, cfg, source)
        index.commit(tmp, out_dir)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class ModelInfo:
    uri: str
    version: str
    dim: int
    window: int


def _stream(
    records: Iterable[InputRecord], embed: Embed, model: ModelInfo, tmp: Path, cfg: BuildConfig, source: str
) -> IndexMeta:
    from gene_ae.windows import window_starts

    meta = IndexMeta(model.uri, model.version, model.dim, cfg.kind, cfg.windows, [], model.window, True, True)
    store = SequenceWriter(tmp)
    stride = cfg.stride or max(model.window // 2, 1)
    sparse_builder: SparseBuilder | None = None
    windows: list[tuple[int, int, int]] = []
    with open(tmp / "vectors.f32", "wb") as vec_out, open(tmp / "windows.f32", "wb") as win_out:
        for batch in _batches(records, cfg.batch_bases):
            if sparse_builder is None:  # k from the first batch's lengths
                sparse_builder = SparseBuilder(cfg.sparse, [r.tokens.size for r in batch])
            first = len(meta.entries)
            for r in batch:
                n = int(r.tokens.size)
                pos = store.add(r.tokens)
                meta.entries.append(Entry(r.id, n, r.label, 0, n))
                sparse_builder.add(pos, r.tokens)
            _write(vec_out, embed([r.tokens for r in batch]))
            if cfg.windows:
                spans = [
                    (first + i, int(a), min(int(a) + model.window, r.tokens.size))
                    for i, r in enumerate(batch)
                    if r.tokens.size > model.window
                    for a in window_starts(int(r.tokens.size), model.window, stride)
                ]
                if spans:
                    _write(win_out, embed([batch[o - first].tokens[a:b] for o, a, b in spans]))
                    windows += spans
    if not meta.entries:
        raise ValueError(f"{source}: no sequences to embed")
    store.close()
    vectors = _read(tmp / "vectors.f32", model.dim)
    meta.kind = index.write_vectors(tmp, vectors, cfg.kind)
    np.save(tmp / index.VECTORS_FILE, vectors)
    meta.windows = bool(windows)
    if windows:
        index.write_vectors(tmp, _read(tmp / "windows.f32", model.dim), cfg.kind, index.WINDOWS_INDEX_FILE)
        spans = np.array(windows, dtype=np.int64)
        np.savez(tmp / index.WINDOWS_FILE, owner=spans[:, 0], start=spans[:, 1], end=spans[:, 2])
    for name in ("vectors.f32", "windows.f32"):
        (tmp / name).unlink()
    sparse_builder.finish().save(tmp)
    index.write_meta(tmp, meta)
    return meta


def _batches(records: Iterable[InputRecord], bases: int) -> Iterator[list[InputRecord]]:
    batch, size = [], 0
    for r in records:
        batch.append(r)
        size += r.tokens.size
        if size >= bases:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _write(f, vectors: np.ndarray) -> None:
    f.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())


def _read(path: Path, dim: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(-1, dim)
