"""Issue 33's mined pairs as graded positives: does ranking a record's real neighbours by their alignment identity,
beside the mutated views, make the learned vector (and its 512 sign bits, 64 bytes) find near copies better?

    python benchmarks/mined_pairs.py --data SHARDS --records TRAIN.fa --val VAL.fa [--steps 200] [--weights 0,1]
                                     [--seed 0] [--threads 2] [--out FILE]

SHARDS: `shard-fasta` of the training records; TRAIN.fa: the same records as FASTA (what is mined); VAL.fa: records
no model trained on (choices are made on them). Three steps, all through the product's own code:

1. Mine: each training record's nearest records by the exact k-mer index (KmerIndex, k = 10), aligned
   (gene_ae.search.align.align_hit, the identity search re-ranks by), the record itself left out: up to
   NEIGHBOURS neighbours each with their identity, kept from MIN_IDENTITY up (real relatives, not chance).
2. Train a model for each of --weights in this process (study.train_in_process's real train step, optimiser,
   schedule and loader, the same --seed and steps; weight 0 is the control): the loss also has the pair term
   times the weight: for ANCHORS records a step with two or more neighbours, their neighbours' whole-record
   search vectors ranked by identity (softplus of (cos to a less identical neighbour - cos to a more identical
   one) / TAU for every pair of neighbours at least GAP apart in identity). A graded order, not a pull:
   NeuroSEED and DNABERT-S regress or rank real pairs; pulling relatives together (all neighbours as plain
   positives) is what costs near copies.
3. Score each on VAL.fa with the eval's own methods (build_methods / mutation_retrieval): the float vector
   (`gene-ae`) and its 512 sign bits (`gene-ae@512bit`, 64 bytes), recall@1 / @100 of 200 mutated copies at
   1 / 5 / 10 / 20 / 30 %. Prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from study import train_in_process

from gene_ae.config import load_config
from gene_ae.core.records import iter_input
from gene_ae.core.threads import in_threads
from gene_ae.evaluate import EvalConfig, build_methods, mutation_retrieval
from gene_ae.index.kmer_index import KmerIndex, KmerIndexConfig
from gene_ae.model.encoder import Encoder
from gene_ae.search.align import Oriented, align_hit
from shard_tools.alphabet import PAD
from shard_tools.inputs import ReaderConfig

NEIGHBOURS = 4  # neighbours kept per record, nearest by k-mers first
MIN_IDENTITY = 0.75  # below this an aligned "neighbour" is chance (16S genes share ~0.7 at random)
ANCHORS = 32  # records a step whose neighbours are ranked
GAP = 0.005  # two neighbours are ordered when their identities differ by at least this
TAU = 0.02  # the ranking's temperature (cosines of relatives differ by hundredths)
LONGEST = 2048  # a record's middle LONGEST bases go into its vector here (16S genes fit)
DIVERGENCES = (0.01, 0.05, 0.1, 0.2, 0.3)


def mine(seqs: list[np.ndarray], threads: int) -> list[list[tuple[int, float]]]:
    """For each record, up to NEIGHBOURS (record, identity) of its nearest others, identity at least MIN_IDENTITY."""
    index = KmerIndex.build(seqs, KmerIndexConfig(k=10))
    top, _ = index.search_segments(seqs, NEIGHBOURS + 2)
    owners = np.where(top >= 0, index.owner[np.maximum(top, 0)], -1)

    def aligned(i: int) -> list[tuple[int, float]]:
        out, oriented = [], Oriented(seqs[i])  # the record's k-mer tables made once for its candidates
        for j in dict.fromkeys(owners[i].tolist()):  # a record once, however many of its segments were near
            if j < 0 or j == i or len(out) == NEIGHBOURS:
                continue
            found = align_hit(seqs[i], seqs[j], oriented=oriented)
            if found is not None and found.identity >= MIN_IDENTITY:
                out.append((j, float(found.identity)))
        return out

    return in_threads(aligned, range(len(seqs)), threads)


def batch_of(seqs: list[np.ndarray], rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows (each record's middle LONGEST bases), PAD after, and their mask."""
    cut = []
    for r in rows:
        s = seqs[r]
        a = max(0, (s.size - LONGEST) // 2)
        cut.append(s[a : a + LONGEST])
    x = np.full((len(cut), max(c.size for c in cut)), PAD, np.int64)
    for i, c in enumerate(cut):
        x[i, : c.size] = c
    t = torch.from_numpy(x)
    return t, t != PAD


def pair_loss(model, seqs: list[np.ndarray], pairs: list[list[tuple[int, float]]], rng: np.random.Generator):
    """The graded ranking term over ANCHORS records with two or more neighbours (see the module's docstring)."""
    eligible = [i for i, p in enumerate(pairs) if len(p) >= 2]
    if not eligible:
        return torch.zeros(())
    anchors = rng.choice(eligible, size=min(ANCHORS, len(eligible)), replace=False).tolist()
    rows = anchors + [j for a in anchors for j, _ in pairs[a]]
    x, mask = batch_of(seqs, rows)
    v = F.normalize(model.search_vector(x, mask).float(), dim=-1)
    terms, at = [], len(anchors)
    for n, a in enumerate(anchors):
        ident = torch.tensor([p for _, p in pairs[a]])
        cos = v[at : at + len(ident)] @ v[n]
        at += len(ident)
        higher = ident[:, None] > ident[None, :] + GAP  # [j, k]: j should be nearer than k
        if higher.any():
            terms.append(F.softplus((cos[None, :] - cos[:, None]) / TAU)[higher])
    return torch.cat(terms).mean() if terms else torch.zeros(())


def train(cfg, steps: int, threads: int, pairs, seqs, weight: float, tag: str):
    """study.train_in_process, with the pair term (times `weight`) added to each step's loss when `weight` > 0."""
    rng = np.random.default_rng(cfg.train.seed)

    def ranked(model) -> tuple[torch.Tensor, dict[str, float]]:
        term = pair_loss(model, seqs, pairs, rng)
        return weight * term, {"loss_pairs": term.item()}

    return train_in_process(cfg, steps, threads, tag, extra=ranked if weight > 0 else None)


def score(model, val: list[np.ndarray]) -> dict:
    cfg = EvalConfig(methods=("gene-ae", "gene-ae@512bit"), n_queries=200, divergences=DIVERGENCES,
                     k_values=(1, 10, 100), align_queries=0)  # fmt: skip
    methods, _ = build_methods(Encoder(model), cfg, val)
    return mutation_retrieval(methods, val, cfg)["methods"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="shard-fasta folder of the training records")
    p.add_argument("--records", required=True, help="the same training records as FASTA (mined)")
    p.add_argument("--val", required=True, help="FASTA of records no model trained on (scored)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--weights", default="0,1", help="a model for each of these pair-term weights (0: the control)")
    p.add_argument("--seed", type=int, default=0, help="train.seed of every model (the same for each weight)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pairs", help="keep the mined neighbours in this .npz (mined once, read by later runs)")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args()
    seqs = [r.tokens for r in iter_input(args.records, ReaderConfig())]
    val = [r.tokens for r in iter_input(args.val, ReaderConfig())]
    start = time.perf_counter()
    weights = [float(w) for w in args.weights.split(",")]
    loaded = bool(args.pairs) and Path(args.pairs).is_file()
    if not any(weights):  # controls alone: nothing to mine
        pairs: list[list[tuple[int, float]]] = []
    elif loaded:
        with np.load(args.pairs) as z:
            at, ids, idents_ = z["at"], z["neighbour"], z["identity"]
            if at.size != len(seqs) + 1:
                raise SystemExit(f"{args.pairs}: mined from {at.size - 1:,} records, --records has {len(seqs):,}")
            pairs = [list(zip(ids[at[i] : at[i + 1]].tolist(), idents_[at[i] : at[i + 1]].tolist()))
                     for i in range(len(seqs))]  # fmt: skip
    else:
        pairs = mine(seqs, args.threads)
        if args.pairs:
            at = np.cumsum([0] + [len(p_) for p_ in pairs])
            np.savez(args.pairs, at=at, neighbour=np.array([j for p_ in pairs for j, _ in p_], np.int64),
                     identity=np.array([x for p_ in pairs for _, x in p_], np.float64))  # fmt: skip
    idents = [x for p_ in pairs for _, x in p_]
    how = f"read from {args.pairs}" if loaded else f"mined in {time.perf_counter() - start:.0f} s"
    mined = (f"{len(idents):,} neighbours of {len(seqs):,} records, {how} "
             f"({sum(len(p_) >= 2 for p_ in pairs):,} records with two or more; identity median "
             f"{np.median(idents):.3f}, 10th-90th percentiles {np.percentile(idents, 10):.3f}-"
             f"{np.percentile(idents, 90):.3f})" if idents else "controls only: nothing mined")  # fmt: skip
    print(mined, file=sys.stderr, flush=True)
    cfg = load_config(None, [f"train.seed={args.seed}"])
    cfg = replace(cfg, data=replace(cfg.data, path=args.data, loader_workers=1))
    rows = []
    for weight in weights:
        tag = f"seed {args.seed}, " + ("control" if weight == 0 else f"mined pairs at weight {weight:g}")
        model = train(cfg, args.steps, args.threads, pairs, seqs, weight, tag)
        res = score(model, val)
        for name, r in res.items():
            rows.append(f"| {tag}: {name} | " + " | ".join(f"{x:.3f}" for x in r["recall@1"])
                        + f" | {r['recall@100'][3]:.3f} / {r['recall@100'][4]:.3f} |")  # fmt: skip
    head = "| model: method | " + " | ".join(f"r@1 {d:g}" for d in DIVERGENCES) + " | r@100 0.2 / 0.3 |"
    table = "\n".join([mined, "", head, "|---" * (len(DIVERGENCES) + 2) + "|", *rows])
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
