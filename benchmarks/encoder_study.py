"""Issue 20's measurements of the encoder: the latent's rate against the bound, and what the conv trunk adds.

    python benchmarks/encoder_study.py rate   --data SHARDS [--steps 300] [--configs 2x4,4x4,...] [--out FILE]
    python benchmarks/encoder_study.py vector --data SHARDS [--steps 540] [--save DIR | --load DIR] [--unseen]
                                              [--models bags,seeds,conv]
                                              [--sources val|dog|16s|windows]

SHARDS: `shard-fasta` of the training data (results.sh's: chimp genes + 16S, with a val split). Every model is
trained here in one process by study.train_in_process (gene_ae.train.step's own train step, optimiser, schedule
and negative queue, the real loop's loader call), --threads torch threads, seeded: a Ray worker's steps, no Ray.

rate: one model per latent shape CxL (latent_channels C, latent_levels L: C x log2(L) / downsample bits a base
as stored), reconstruction only (train.contrastive_weight = 0), scored on held-out 512-base windows: the first
window of each val-split record ("val", the set choices are made on) and of the dog genes (--unseen: an unseen
species, reported once). Beside each row: the rate-distortion bound for a uniform 4-letter source under Hamming
distortion (identity 1 - D needs R(D) = 2 - h(D) - D log2 3 bits a base; the identity it allows at the row's
rate), and lossless zstd (level 19) of the same windows as text, in bits a base.

vector: the default model beside it with model.vector_seeds (256 learned fuzzy spaced seeds, model/seeds.py, at a
learned weight from 1) or model.vector_conv (the conv trunk's pooled features, weight learned from 0), trained as
the default trains (--models picks them). Recall@1 and @100 of mutated copies on the val records, for each
checkpoint with its extra branch (learned weight) and without it (weight 0: the bags alone, the ablation), beside
the bags' model trained the same steps. --save keeps the checkpoints.
--sources picks the records copied and searched for: val (the val split, where choices are made), dog (the
unseen dog genes; what --unseen means), 16s (the val split's 16S genes alone: unseen in training, but part of
the val set), windows (80 windows of 20-100 kb cut from the two bacterial genomes: unseen, long).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from study import train_in_process

from gene_ae.config import Config, DataConfig, load_config
from gene_ae.train.data import val_records
from shard_tools.alphabet import decode

REPO = Path(__file__).resolve().parents[1]
DOG = REPO.parent / "shared" / "data" / "genefam" / "dog_data.txt"
DIVERGENCES = (0.1, 0.2, 0.3)


def rd_bits(identity: float) -> float:
    """Bits a base a uniform 4-letter source needs for this fraction of bases right (Hamming distortion)."""
    d = 1.0 - identity
    if d >= 0.75:
        return 0.0
    h = 0.0 if d <= 0 else -d * math.log2(d) - (1 - d) * math.log2(1 - d)
    return 2.0 - h - d * math.log2(3)


def rd_identity(bits: float) -> float:
    """The best identity the bound allows at `bits` a base (bisection of rd_bits, which falls with D)."""
    if bits >= 2.0:
        return 1.0
    lo, hi = 0.25, 1.0  # identity
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rd_bits(mid) <= bits else (lo, mid)
    return lo


def zstd_bits(windows: list[np.ndarray]) -> float:
    import zstandard

    text = "\n".join(decode(w) for w in windows).encode()
    return 8 * len(zstandard.ZstdCompressor(level=19).compress(text)) / sum(w.size for w in windows)


def first_windows(seqs: list[np.ndarray], window: int) -> list[np.ndarray]:
    return [s[:window] for s in seqs if s.size >= 64]


def dog_genes() -> list[np.ndarray]:
    from gene_ae.core.records import iter_input
    from shard_tools.inputs import ReaderConfig

    return [r.tokens for r in iter_input(str(DOG), ReaderConfig(label_column="class"))]


def study_sources(data: str, which: str) -> list[np.ndarray]:
    """The records whose mutated copies `vector` searches for (--sources)."""
    from gene_ae.core.records import iter_input
    from shard_tools.inputs import ReaderConfig

    if which == "val":
        return val_records(DataConfig(path=data, val_records=400))
    if which == "dog":  # the evaluation set, scored once after the choices were made on the val records
        return dog_genes()
    if which == "16s":
        from shard_tools import read_shards

        val_ids = {rid for rid, _, _ in read_shards(data, "val")}
        path = REPO.parent / "shared" / "data" / "rrna16s" / "ten_16s.100.fa.gz"
        return [r.tokens for r in iter_input(str(path), ReaderConfig()) if r.id in val_ids]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from cut_windows import cut

    bacteria = REPO.parent / "shared" / "data" / "bacteria"
    files = sorted(bacteria.glob("*.fasta.gz"))
    genomes = [(r.id, r.tokens) for f in files for r in iter_input(str(f), ReaderConfig())]
    return [t for _, t in cut(genomes, 80, 20_000, 100_000, seed=0)]


def base_config(data: str, overrides: list[str]) -> Config:
    cfg = load_config(None, overrides)
    return replace(cfg, data=replace(cfg.data, path=data, loader_workers=1))


def rate(args: argparse.Namespace) -> str:
    from gene_ae.model.encoder import Encoder

    sets = {"val": val_records(DataConfig(path=args.data, val_records=400))}
    if args.unseen:
        sets["dog (unseen)"] = dog_genes()
    sets = {name: first_windows(seqs, 512) for name, seqs in sets.items()}
    zstd = {name: zstd_bits(w) for name, w in sets.items()}
    lines = [
        "| latent (channels x levels) | bits/base as stored | " + " | ".join(f"identity {n}" for n in sets)
        + " | bound at this rate | bits the bound needs for the val identity | train s |",
        "|---" * (len(sets) + 5) + "|",
    ]  # fmt: skip
    for shape in args.configs.split(","):
        channels, levels = (int(x) for x in shape.split("x"))
        over = [f"model.latent_channels={channels}", f"model.latent_levels={levels}", "train.contrastive_weight=0"]
        cfg = base_config(args.data, over + args.set)
        t0 = time.perf_counter()
        model = train_in_process(cfg, args.steps, args.threads, shape)
        took = time.perf_counter() - t0
        enc = Encoder(model, torch.device("cpu"))
        ident = {n: (r := enc.reconstruct_windows(w)).correct / max(r.bases, 1) for n, w in sets.items()}
        bits = cfg.model.latent_bits_per_base
        lines.append(
            f"| {channels} x {levels} | {bits:.2f} | " + " | ".join(f"{v:.4f}" for v in ident.values())
            + f" | {rd_identity(bits):.4f} | {rd_bits(ident['val']):.2f} | {took:.0f} |"
        )  # fmt: skip
        print(lines[-1], flush=True)
    lines.append("")
    lines.append("zstd -19 of the same windows (lossless): " + ", ".join(f"{n} {b:.2f}" for n, b in zstd.items())
                 + " bits a base; 2-bit packing: 2.00")  # fmt: skip
    return "\n".join(lines)


CODES = ("f32", "f16", "sq8", "pq", "binary")


def coded_index(vectors: np.ndarray, codec: str):
    """A faiss index storing each vector as `codec`: (index, bytes a vector). f32/f16/sq8 as gene-ae embed
    stores them (gene_ae/index/vectors.py); pq: D/8 sub-vectors of 8 bits each (D/8 bytes); binary: the
    sign of each value (D/8 bytes), searched by Hamming distance."""
    import faiss

    from gene_ae.index.vectors import build_faiss

    d = vectors.shape[1]
    if codec in ("f32", "f16", "sq8"):
        return build_faiss(vectors, "flat", codec)[0], {"f32": 4 * d, "f16": 2 * d, "sq8": d}[codec]
    if codec == "pq":
        index = faiss.IndexPQ(d, d // 8, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(np.repeat(vectors, max(1, 256 * 40 // len(vectors) + 1), axis=0))  # faiss wants 39 x 256
        index.add(vectors)
        return index, d // 8
    index = faiss.IndexBinaryFlat(d)
    index.add(np.packbits(vectors > 0, axis=1))
    return index, d // 8


def coded_search(index, codec: str, queries: np.ndarray, k: int) -> np.ndarray:
    k = min(k, index.ntotal)
    if codec == "binary":
        return index.search(np.packbits(queries > 0, axis=1), k)[1]
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def cached(embed):
    """embed, remembering each list of sequences it was given (the same copies are searched per codec)."""
    import hashlib

    memo: dict[str, np.ndarray] = {}

    def run(seqs):
        h = hashlib.sha1()
        for x in seqs:
            h.update(x.tobytes() + b"|")
        key = h.hexdigest()
        if key not in memo:
            memo[key] = np.asarray(embed(list(seqs)), dtype=np.float32)
        return memo[key]

    return run


def collection(sources: list[np.ndarray], data: str, distractors: int) -> list[np.ndarray]:
    """The sources first, then `distractors` training-split records: recall@100 means something only in a
    collection far larger than 100 records."""
    from shard_tools import read_shards

    extra = [t for _, (_, t, _) in zip(range(distractors), read_shards(data, "train"))]
    return list(sources) + extra


def equal_bytes(methods: dict, genes: list[np.ndarray], n_sources: int, seed: int) -> list[str]:
    """recall@1 / @100 of mutated copies of genes[:n_sources] in all of `genes`, per method per codec, with
    its bytes a record; exact 7-mer counts (what the k-mer index keeps) beside them at their own bytes (2-byte
    id + 1-byte count per distinct k-mer)."""
    from gene_ae.evaluate.baselines import kmer_matrix
    from gene_ae.evaluate.metrics import copy_recall

    sources = np.arange(n_sources)
    lines = ["| method | stored as | bytes a record | recall@1 10 / 20 / 30 % | recall@100 10 / 20 / 30 % |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, embed in methods.items():
        embed = cached(embed)
        base = embed(genes)
        for codec in CODES:
            index, size = coded_index(base, codec)

            def search(q, k, index=index, codec=codec, embed=embed):
                return coded_search(index, codec, embed(q), k)

            r = copy_recall(search, genes, sources, DIVERGENCES, seed, (1, 100))
            lines.append(f"| {name} | {codec} | {size} | " + " / ".join(f"{x:.3f}" for x in r["recall@1"])
                         + " | " + " / ".join(f"{x:.3f}" for x in r["recall@100"]) + " |")  # fmt: skip
            print(lines[-1], flush=True)
    exact = kmer_matrix(genes, 7)

    def exact_search(queries: list[np.ndarray], k: int) -> np.ndarray:
        sims = (kmer_matrix(queries, 7) @ exact.T).toarray()
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    r = copy_recall(exact_search, genes, sources, DIVERGENCES, seed, (1, 100))
    size = int(3 * exact.nnz / exact.shape[0])
    lines.append(f"| exact 7-mer counts | sparse | {size} | " + " / ".join(f"{x:.3f}" for x in r["recall@1"])
                 + " | " + " / ".join(f"{x:.3f}" for x in r["recall@100"]) + " |")  # fmt: skip
    return lines


MODELS = {  # --models: checkpoint name -> (label, config overrides)
    "bags": ("bags (default)", []),
    "conv": ("bags + conv branch", ["model.vector_conv=true"]),
    "seeds": ("bags + seed branch", ["model.vector_seeds=256"]),
}


def vector(args: argparse.Namespace) -> str:
    from gene_ae.core.topk import top_k
    from gene_ae.evaluate.baselines import hashed_profiles
    from gene_ae.evaluate.metrics import copy_recall
    from gene_ae.model.checkpoint import load_model, save
    from gene_ae.model.encoder import Encoder

    sources = study_sources(args.data, "dog" if args.unseen else args.sources)
    genes = collection(sources, args.data, args.distractors)
    rows, embeds = [], {}
    for key in args.models.split(","):
        name, over = MODELS[key]
        if args.load:  # the checkpoints an earlier run saved, scored without training again
            model, cfg = load_model(Path(args.load) / key)
            model.eval()
        else:
            cfg = base_config(args.data, over + args.set)
            model = train_in_process(cfg, args.steps, args.threads, name)
        if args.save:
            save(Path(args.save) / key, cfg, model)
        learned = [w for w in (model.conv_weight, model.seed_weight) if w is not None]
        for w in [None, 0.0] if learned else [None]:
            enc = Encoder(model, torch.device("cpu"))

            @cached
            @torch.no_grad()
            def embed(seqs, enc=enc, w=w, model=model):
                v = model.combine(enc.branch_sums(seqs), w)
                return torch.nn.functional.normalize(v, dim=-1).numpy()

            r = copy_recall(lambda q, k, e=embed: top_k(e(q) @ e(genes).T, k)[0], genes,
                            np.arange(len(sources)), DIVERGENCES, cfg.train.seed, (1, 100))  # fmt: skip
            label = name if w is None else f"{name}, weight 0 (its bags alone)"
            if w is None and learned:
                label += ", learned weight " + " / ".join(f"{float(x.detach()):.3f}" for x in learned)
            if w is None:
                rec = enc.reconstruct_windows(first_windows(sources, cfg.model.window))
                label += f"; reconstruction {rec.correct / max(rec.bases, 1):.4f} at "
                label += f"{cfg.model.latent_bits_per_base:g} bits a base"
            rows.append((label, r["recall@1"], r["recall@100"]))
            embeds[name + (" (weight 0)" if w == 0.0 else "")] = embed
            print(rows[-1], flush=True)
    lines = ["| vector | recall@1 10 / 20 / 30 % | recall@100 10 / 20 / 30 % |", "|---|---|---|"]
    for label, r1, r100 in rows:
        lines.append(f"| {label} | {' / '.join(f'{x:.3f}' for x in r1)} | {' / '.join(f'{x:.3f}' for x in r100)} |")
    dim = cfg.model.vector_dim
    for k in (5, 6, 7):
        embeds[f"{k}-mer profile hashed to {dim}"] = lambda seqs, k=k: hashed_profiles(seqs, k, dim)
    return "\n".join([*lines, "", *equal_bytes(embeds, genes, len(sources), cfg.train.seed)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("rate", "vector"))
    p.add_argument("--data", required=True, help="training shards (shard-fasta output with a val split)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default="2x4,4x4,4x8,8x4,8x8,8x16", help="rate: latent shapes CxL")
    p.add_argument(
        "--unseen",
        action="store_true",
        help="rate: also score the dog genes (evaluation data); vector: score them instead of val",
    )
    p.add_argument("--sources", choices=("val", "dog", "16s", "windows"), default="val",
                   help="vector: the records copied and searched for (docstring)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], help="config override for every model (repeatable)")
    p.add_argument("--save", help="vector: write the checkpoints here")
    p.add_argument("--load", help="vector: score the checkpoints --save wrote there instead of training")
    p.add_argument("--models", default="bags,seeds", help=f"vector: which of {', '.join(MODELS)} to train")
    p.add_argument("--distractors", type=int, default=4000, help="vector: training records added to the collection")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args(argv)
    table = rate(args) if args.part == "rate" else vector(args)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
