"""Untrained 512-bit (64-byte) codes of k-mer profiles, the baselines a trained code must beat, built other ways than
the eval's `K-mer@512bit` (the signs of the profile feature-hashed to 512 values): a dense random projection
(SimHash), the profile weighted by each k-mer's inverse document frequency in the training records first, and a
per-record correction of the sign code (RaBitQ's: the score divided by the cosine of the record with its own signs,
after a random rotation). Also the float 512-value projections (2 KB), to show what the signs lose, and b-bit MinHash
(Li and Koenig 2010: the lowest b bits of each of 512 / b one-permutation bins, the share of equal bins its
similarity), MinHash spent at 64 bytes in more, smaller bins than minhash-kK@64b's 16 of 32 bits.

    python benchmarks/sign_codes.py --records TRAIN.fa --val VAL.fa [--k 7,8] [--minhash-k 8,10] [--out FILE]

Scored with the eval's own mutation_retrieval (200 mutated copies a divergence), recall@1 at 1 / 5 / 10 / 20 / 30 %
and recall@100 at 20 / 30 %: a float query against the records' codes, as gene-ae@512bit is scored. Records whose
codes are equal tie; ties break by position here and in the eval's own order there, so the first row can differ from
the eval's `K-mer@512bit` by a query or two.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from common import emit, recall_cells, recall_head, recall_row

from gene_ae.core.kmers import kmer_counts
from gene_ae.core.records import iter_input
from gene_ae.core.topk import top_k
from gene_ae.evaluate import EvalConfig, baselines, mutation_retrieval
from gene_ae.evaluate.methods import MinHashIndex
from shard_tools.inputs import ReaderConfig

DIM = 512
DIVERGENCES = (0.01, 0.05, 0.1, 0.2, 0.3)


def idf(records: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Smoothed inverse document frequency of every canonical k-mer over `records`."""
    counts = kmer_counts(records, k, True).tocsc()
    df = np.diff(counts.indptr).astype(np.float64)
    return np.log((len(records) + 1) / (df + 1)) + 1.0


def projected(seqs: Sequence[np.ndarray], k: int, basis: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Canonical k-mer counts (times `weights`) through a dense [4^k, DIM] basis, L2-normalised."""
    counts = kmer_counts(seqs, k, True).tocsr().astype(np.float32)
    if weights is not None:
        counts = counts.multiply(weights[None, :].astype(np.float32)).tocsr()
    out = np.asarray(counts @ basis)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class CodeIndex:
    """Records as the signs of their vectors (after `rotation`), a float query scored against them; `corrected`:
    each record's score divided by the cosine of its rotated vector with its own signs (RaBitQ's estimator)."""

    def __init__(self, vectors: np.ndarray, embed: Callable, signs: bool, rotation: np.ndarray | None, corrected: bool):
        self.embed, self.rotation = embed, rotation
        y = vectors @ rotation if rotation is not None else vectors
        self.stored = np.where(y >= 0, 1.0, -1.0).astype(np.float32) / np.sqrt(y.shape[1]) if signs else y
        unit = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        self.scale = np.einsum("ij,ij->i", self.stored, unit) if corrected else np.ones(len(y), np.float32)

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.embed(queries)
        q = q @ self.rotation if self.rotation is not None else q
        return top_k(q @ self.stored.T / self.scale[None, :], k)


@dataclass
class BbitMethod:
    name: str
    k: int
    bits: int  # a bin's lowest bits kept: DIM / bits bins, DIM bits a record

    def sketch(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        full = baselines.minhash_codes(seqs, self.k, DIM // self.bits)
        return (full & np.uint32((1 << self.bits) - 1)).astype(np.uint8)

    def index(self, refs: Sequence[np.ndarray]) -> MinHashIndex:
        """The eval's MinHash index: its share of agreeing bins (no b-bit value is its 32-bit empty mark, so every
        bin counts)."""
        return MinHashIndex(self.sketch(refs), self.sketch)


@dataclass
class CodeMethod:
    name: str
    embed: Callable[[Sequence[np.ndarray]], np.ndarray]
    signs: bool = True
    rotated: bool = False
    corrected: bool = False

    def index(self, refs: Sequence[np.ndarray]) -> CodeIndex:
        rotation = None
        if self.rotated:
            rotation = np.linalg.qr(np.random.default_rng(1).standard_normal((DIM, DIM)))[0].astype(np.float32)
        return CodeIndex(self.embed(refs), self.embed, self.signs, rotation, self.corrected)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", required=True, help="FASTA of the training records (the IDF is counted over them)")
    p.add_argument("--val", required=True, help="FASTA of the records searched")
    p.add_argument("--k", default="7,8")
    p.add_argument("--minhash-k", default="8,10", help="k of the b-bit MinHash rows (1, 2 and 4 bits a bin each)")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args()
    records = [r.tokens for r in iter_input(args.records, ReaderConfig())]
    val = [r.tokens for r in iter_input(args.val, ReaderConfig())]
    methods = []
    for k in (int(x) for x in args.k.split(",")):
        hashed = partial(baselines.hashed_profiles, k=k, dim=DIM)
        basis = np.random.default_rng(0).standard_normal((4**k, DIM)).astype(np.float32)
        dense = partial(projected, k=k, basis=basis)
        weighted = partial(projected, k=k, basis=basis, weights=idf(records, k))
        methods += [
            CodeMethod(f"{k}-mer hashed, signs (the eval's {k}-mer@512bit but for ties)", hashed),
            CodeMethod(f"{k}-mer hashed, signs, rotated, corrected", hashed, rotated=True, corrected=True),
            CodeMethod(f"{k}-mer dense projection, signs", dense),
            CodeMethod(f"{k}-mer IDF, dense projection, signs", weighted),
            CodeMethod(f"{k}-mer IDF, dense projection, float (2 KB)", weighted, signs=False),
        ]
    for k in (int(x) for x in args.minhash_k.split(",") if x):
        methods += [
            BbitMethod(f"{k}-mer b-bit MinHash, {DIM // b} bins of {b} bit{'s' * (b > 1)}", k, b) for b in (1, 2, 4)
        ]
    cfg = EvalConfig(n_queries=200, divergences=DIVERGENCES, k_values=(1, 10, 100), align_queries=0)
    rows = []
    for method in methods:
        r = mutation_retrieval([method], val, cfg)["methods"][method.name]
        rows.append(recall_row(method.name, [recall_cells(r)]))
        print(rows[-1], file=sys.stderr, flush=True)
    return emit("\n".join([recall_head("code (64 bytes unless named)", DIVERGENCES), *rows]) + "\n", args.out)


if __name__ == "__main__":
    sys.exit(main())
