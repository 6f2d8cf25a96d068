"""Building an index directory from a stream of records: sequences stored, records and their windows
embedded (in-process or with Ray Data), k-mers counted, one batch at a time."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gene_ae.core.features import FeatureColumns
from gene_ae.core.records import InputRecord
from gene_ae.core.windows import window_starts
from gene_ae.index.directory import Entry, IndexMeta, IndexWriter, write_index
from gene_ae.index.kmer_index import KmerIndexBuilder, KmerIndexConfig

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
            from gene_ae.model.encoder import Encoder

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
    kind: str = "auto"  # faiss index kind of the record vectors: auto, flat, ivf, hnsw
    windows: bool = True  # also index windows of records longer than the model window
    stride: int = 0  # window stride; 0 = half a window
    kmers: KmerIndexConfig = field(default_factory=KmerIndexConfig)
    batch_bases: int = 1 << 21  # records are read, embedded and stored this many bases at a time
    batch_size: int = 64  # encoder batch size
    features: dict[str, str] = field(default_factory=dict)  # the user's features to store: name -> kind


@dataclass(kw_only=True)
class ModelInfo:
    uri: str
    version: str
    dim: int
    window: int


def build_index(
    records: Iterable[InputRecord],
    embed: Embed,
    model: ModelInfo,
    out_dir: str | Path,
    cfg: BuildConfig,
    overwrite: bool = False,
    source: str = "input",
) -> IndexMeta:
    """Stream records into an index directory (gene_ae/index/directory.py): memory is one batch of records
    plus the index itself (vectors, k-mer postings), never the collection's sequences."""
    with write_index(out_dir, overwrite) as writer:
        return _stream(records, embed, model, writer, cfg, source)


def _stream(
    records: Iterable[InputRecord], embed: Embed, model: ModelInfo, writer: IndexWriter, cfg: BuildConfig, source: str
) -> IndexMeta:
    meta = IndexMeta(
        model_uri=model.uri, model_version=model.version, dim=model.dim, kind=cfg.kind, windows=cfg.windows,
        window=model.window, sparse=True, sequences=True, features=dict(cfg.features),
    )  # fmt: skip
    feature_rows: list[dict] = []
    tmp = writer.dir
    store = writer.sequences()
    stride = cfg.stride or max(model.window // 2, 1)
    meta.stride = stride
    kmers: KmerIndexBuilder | None = None
    windows: list[tuple[int, int, int]] = []
    with open(tmp / "vectors.f32", "wb") as vec_out, open(tmp / "windows.f32", "wb") as win_out:
        for batch in _batches(records, cfg.batch_bases):
            if kmers is None:  # k from the first batch's lengths
                kmers = KmerIndexBuilder(cfg.kmers, [r.tokens.size for r in batch])
            first = len(meta.entries)
            for r in batch:
                n = int(r.tokens.size)
                pos = store.add(r.tokens)
                meta.entries.append(Entry(id=r.id, length=n, label=r.label, start=0, end=n))
                kmers.add(pos, r.tokens)
                if cfg.features:
                    feature_rows.append(r.features)
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
    meta.kind = writer.record_vectors(_read(tmp / "vectors.f32", model.dim), cfg.kind)
    meta.windows = bool(windows)
    if windows:
        writer.window_vectors(_read(tmp / "windows.f32", model.dim), np.array(windows, dtype=np.int64), cfg.kind)
    for name in ("vectors.f32", "windows.f32"):
        (tmp / name).unlink()
    writer.kmers(kmers.finish())
    if cfg.features:
        writer.features(FeatureColumns.from_rows(cfg.features, feature_rows))
    writer.finish(meta)
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
