"""Embedding a collection for an index: records (or their windows) -> entries and vectors, in-process or
with Ray Data for collections beyond one machine."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np

from gene_ae.index import Entry
from gene_ae.records import InputRecord


def pieces_of(records: Iterable[InputRecord], window: int, stride: int, windows: bool):
    """(entries, token pieces): one per record, or with `windows` one per window of each record."""
    from gene_ae.model import window_starts

    entries, pieces = [], []
    for rec in records:
        n = int(rec.tokens.size)
        starts = window_starts(n, window, stride) if windows else [0]
        for start in starts:
            end = min(int(start) + window, n) if windows else n
            entries.append(Entry(rec.id, n, rec.label, int(start), end))
            pieces.append(rec.tokens[start:end])
    return entries, pieces


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
