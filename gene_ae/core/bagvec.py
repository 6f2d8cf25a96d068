"""A k-mer-bag model's search vector without torch: its bag tables, and the vector computed from them in numpy.

Why: a model whose vector is k-mer bags alone (the default: no trunk, conv or seed branch, no features, stored
float) is a lookup table per k, and its vector is each table's rows summed over the sequence's k-mers, normalised
per table, summed and normalised again (GeneAE.combine, Encoder.embed_tokens). `gene-ae embed --no-kmers` writes
the tables into the index (index/directory.py `BAGS_FILE`), so a search of the record vectors computes a query's
vector here and never imports torch or loads the model: one query answers in a fraction of a second rather than
3 s. The sums run in float64 and are rounded once, as bag_sum's long rows are; the vectors agree with the model's
to float32 rounding (the search's provenance check compares them with the stored ones).

bags.npz (this module owns it): `config` (JSON: the k of each table, canonical, buckets, the piece length and
overlap the model cuts a sequence into) and per table `rows_K` (the ids it holds: the canonical ones when ids are
canonical and not hashed, else all) and `weights_K` [rows, dim] float32.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from gene_ae.core.kmers import kmer_id_row
from gene_ae.core.windows import cut_starts

FILE = "bags.npz"


@dataclass(frozen=True)
class BagTable:
    k: int
    buckets: int  # ids run 0..buckets - 1; `buckets` itself is the pad id (a k-mer touching a non-base)
    rows: np.ndarray  # int64 ids held, increasing
    weights: np.ndarray  # [len(rows), dim] float32: the model's vector of each id

    @cached_property
    def lookup(self) -> np.ndarray:
        """id -> row of `weights` (-1: an id it does not hold, or the pad id), as one array over buckets + 1."""
        at = np.full(self.buckets + 1, -1, np.int64)
        at[self.rows] = np.arange(self.rows.size)
        return at

    @cached_property
    def exact(self) -> np.ndarray:
        """The weights in float64, made once: the sums are taken in it and rounded once."""
        return self.weights.astype(np.float64)


@dataclass(frozen=True)
class BagTables:
    """A bag-only model's tables and how it cuts a sequence (Encoder._pieces: every `piece` bases, each piece
    running `overlap` bases on)."""

    tables: tuple[BagTable, ...]
    canonical: bool
    piece: int
    overlap: int

    @property
    def dim(self) -> int:
        return int(self.tables[0].weights.shape[1])

    def embed(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """[n, dim] L2-normalised float32: what the model's Encoder.embed_tokens gives these token arrays."""
        out = np.zeros((len(seqs), self.dim), np.float32)
        for i, seq in enumerate(seqs):
            if seq.size == 0:
                raise ValueError(f"row {i}: empty sequence")
            vector = np.zeros(self.dim, np.float32)
            for table in self.tables:
                total = np.zeros(self.dim, np.float64)
                for start in cut_starts(int(seq.size), self.piece):
                    ids = kmer_id_row(seq[start : start + self.piece + self.overlap], table.k, self.canonical,
                                      table.buckets)  # fmt: skip
                    rows = table.lookup[ids]
                    rows, counts = np.unique(rows[rows >= 0], return_counts=True)
                    total += counts @ table.exact[rows]
                vector += _normalised(total.astype(np.float32))
            out[i] = _normalised(vector)
        return out

    def __call__(self, seqs: Sequence[np.ndarray], batch_size: int = 0) -> np.ndarray:
        """The Embed a search takes (batch_size: unused, every sequence is one pass)."""
        return self.embed(seqs)

    def save(self, directory: str | Path) -> None:
        config = {"ks": [t.k for t in self.tables], "buckets": [t.buckets for t in self.tables],
                  "canonical": self.canonical, "piece": self.piece, "overlap": self.overlap}  # fmt: skip
        arrays = {"config": np.frombuffer(json.dumps(config).encode(), np.uint8)}
        for t in self.tables:
            arrays[f"rows_{t.k}"] = t.rows.astype(np.int64)
            arrays[f"weights_{t.k}"] = np.ascontiguousarray(t.weights, dtype=np.float32)
        np.savez(Path(directory) / FILE, **arrays)

    @classmethod
    def load(cls, directory: str | Path) -> BagTables:
        """bags.npz of an index, checked for shape (its bytes are checked against index.json's digest first)."""
        path = Path(directory) / FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                config = json.loads(z["config"].tobytes())
                tables = []
                for k, buckets in zip(config["ks"], config["buckets"]):
                    rows, weights = z[f"rows_{k}"], z[f"weights_{k}"]
                    if (rows.ndim != 1 or weights.ndim != 2 or weights.shape[0] != rows.size or rows.size == 0
                            or rows.min() < 0 or rows.max() >= buckets or weights.dtype != np.float32):  # fmt: skip
                        raise ValueError(f"table of k = {k}: rows {rows.shape}, weights {weights.shape}")
                    tables.append(BagTable(int(k), int(buckets), rows.astype(np.int64), weights))
                if not tables or len({t.weights.shape[1] for t in tables}) != 1:
                    raise ValueError("no tables, or tables of different widths")
                return cls(tuple(tables), bool(config["canonical"]), int(config["piece"]), int(config["overlap"]))
        except (KeyError, TypeError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a gene-ae bag table file ({exc}); rebuild the index") from None


def canonical_ids(k: int) -> np.ndarray:
    """The k-mer ids (2 bits a base, first base most significant) no greater than their reverse complement's:
    the only ids canonical k-mers take."""
    ids = np.arange(4**k, dtype=np.int64)
    rc = np.zeros_like(ids)
    rest = ids.copy()
    for _ in range(k):
        rc = rc * 4 + (3 - (rest & 3))
        rest >>= 2
    return ids[ids <= rc]


def _normalised(x: np.ndarray) -> np.ndarray:
    """x / max(|x|, 1e-12), as torch's F.normalize."""
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)
