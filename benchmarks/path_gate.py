"""Would long sequences do better without the short k-mer paths? Scored on the training data only.

A 5-mer profile of a long sequence is mostly its composition. This re-weights a trained checkpoint's paths
by sequence length, without retraining: path k is kept up to T x 4^k / 2 bases (hard) or weighted
min(1, T x 4^k / 2 / length) (soft); the longest path is always kept. Sets: the val split's records
("genes"), 20 genomes mutated 0.5 % from one 120 kb concatenation of val records ("clade"), and 60
distinct 20-100 kb stretches of concatenated training-split records ("long"). Prints one JSON line per
variant with recall@1 at 1 / 5 / 10 / 20 / 30 %.

    python benchmarks/path_gate.py --data SHARDS CHECKPOINT_DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch

from gene_ae.config import DataConfig
from gene_ae.core.mutate import mutate
from gene_ae.evaluate.metrics import mutation_recall
from gene_ae.model.encoder import Encoder
from gene_ae.train.data import val_records
from shard_tools import read_shards

DIVERGENCES = (0.01, 0.05, 0.1, 0.2, 0.3)
VARIANTS = [(float("inf"), False), (64, False), (16, False), (4, False), (16, True), (4, True), (1, True)]


def sets(data: str) -> dict[str, list[np.ndarray]]:
    genes = val_records(DataConfig(path=data, val_records=400))
    rng = np.random.default_rng(3)
    base = np.concatenate(genes[:80])[:120_000]
    clade = [mutate(base, 0.005, rng, indel_fraction=0.1) for _ in range(20)]
    train = [t for _, (_, t, _) in zip(range(3000), read_shards(data, "train"))]
    pool, lengths = np.concatenate(train), np.random.default_rng(5).integers(20_000, 100_000, 60)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return {"genes": genes, "clade": clade, "long": [pool[a : a + n] for a, n in zip(starts, lengths)]}


def gated(enc: Encoder, limit: float, soft: bool):
    ks = enc.cfg.kmer_sizes

    def embed(seqs: Sequence[np.ndarray]) -> np.ndarray:
        length = torch.tensor([s.size for s in seqs], dtype=torch.float32)
        weights = []
        for k in ks:
            cap = limit * 4**k / 2
            if k == max(ks):
                weights.append(torch.ones_like(length))
            else:
                weights.append(torch.clamp(cap / length, max=1.0) if soft else (length <= cap).float())
        paths = torch.nn.functional.normalize(enc.branch_sums(seqs), dim=-1)  # what GeneAE.combine normalises
        v = (paths * torch.stack(weights, 1)[..., None]).sum(1)
        return torch.nn.functional.normalize(v, dim=-1).numpy()

    return embed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the training shards (val and train splits are read)")
    p.add_argument("checkpoint", help="a checkpoint directory of a bag-only model")
    args = p.parse_args()
    torch.set_num_threads(1)
    enc = Encoder.load(args.checkpoint, device="cpu")
    data = sets(args.data)
    for limit, soft in VARIANTS:
        row = {"T": limit, "soft": soft}
        for name, seqs in data.items():
            recall = mutation_recall(gated(enc, limit, soft), seqs, DIVERGENCES, 0)["recall@1"]
            row[name] = [round(x, 3) for x in recall]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
