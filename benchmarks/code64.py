"""Issue 33's 64-byte code trained as it is used: models trained in this process with their settings (each over
several seeds, since a seed alone moves a 64-byte code's recall by 0.05), scored on a val split beside the other
64-byte methods, in one table.

    python benchmarks/code64.py --data SHARDS --val VAL.fa [--val UNSEEN.fa ...] [--steps 200] [--seeds 0,1,2]
        [--threads 2] [--variant NAME=KEY=VALUE,KEY=VALUE ...] [--baselines 7-mer@512bit,8-mer@512bit,...]
        [--labels LABELLED.fa] [--out FILE]

SHARDS: `shard-fasta` of the training records; VAL.fa: records no model trained on (choices are made on them;
the unseen sets, further --val, are scored once, afterwards, by the same models). Each --variant is a model
config's overrides (`--set` of gene_ae.train); the default variants are the float vector (signs taken after
training), the sign code trained symmetrically (views coded too: `model.code_views=true`) and trained as a search
uses it (records coded, views float: `model.code_views=false`). Every model is trained by study.train_in_process
(the real step, optimiser, schedule and loader; no Ray) and scored with the eval's own methods (build_methods /
mutation_retrieval): its float vector (`gene-ae`, 2 KB), its sign bits (`gene-ae@512bit` for 512 values, 64 bytes, a
float query against the records' signs) and its vector in 64 bytes as the index's pq64 codec stores it
(`gene-ae@64b`: product-quantised after training), 200 mutated copies a divergence, recall@1
at 1 / 5 / 10 / 20 / 30 % and recall@100 at 20 / 30 %; a variant's row is the mean over its seeds, with half the
spread (max - min) of each cell beside it; one table a set. --labels: a labelled set (a `label=` or `tax=...,g:`
header field: the genus of a 16S gene) scored by the eval's leave-one-out same-label precision@1 / @10 of every
method, the baselines and the exact 7-mer counts (issue 33's genus target) beside.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
from common import emit, recall_cells, recall_head, recall_row
from study import train_in_process

from gene_ae.config import load_config
from gene_ae.core.records import iter_input
from gene_ae.evaluate import EvalConfig, build_methods, mutation_retrieval
from gene_ae.evaluate.metrics import label_retrieval
from gene_ae.model.encoder import Encoder
from shard_tools.inputs import ReaderConfig

DIVERGENCES = (0.01, 0.05, 0.1, 0.2, 0.3)
VARIANTS = {
    "float (signs after training)": [],
    "signs trained, views coded": ["model.vector_bits=1", "model.code_views=true"],
    "signs trained, views float": ["model.vector_bits=1", "model.code_views=false"],
}
BASELINES = "7-mer@512bit,8-mer@512bit,6-mer@64b,minhash-k11@64b,8-mer"


def overrides(text: str) -> list[str]:
    """From "a=1,b=5,7,8" to ["a=1", "b=5,7,8"]: a piece without "=" continues the value before it (a tuple)."""
    out: list[str] = []
    for piece in text.split(","):
        if "=" in piece or not out:
            out.append(piece)
        else:
            out[-1] += "," + piece
    return [o for o in out if o]


def scored(methods_named: tuple[str, ...], encoder: Encoder | None, val: list[np.ndarray]) -> dict[str, dict]:
    cfg = EvalConfig(methods=methods_named, n_queries=200, divergences=DIVERGENCES, k_values=(1, 10, 100),
                     align_queries=0)  # fmt: skip
    methods, _ = build_methods(encoder, cfg, val)
    return mutation_retrieval(methods, val, cfg)["methods"]


def labelled(methods_named: tuple[str, ...], encoder: Encoder | None, seqs: list[np.ndarray],
             labels: list[str | None]) -> dict[str, dict]:  # fmt: skip
    """Each method's leave-one-out same-label precision@1 / @10 (the eval's label_retrieval, 2,000 queries)."""
    cfg = EvalConfig(methods=methods_named, precision_k=(1, 10), label_queries=2000)
    methods, _ = build_methods(encoder, cfg, seqs)
    return label_retrieval(methods, seqs, labels, cfg)["methods"]


def precision_row(name: str, runs: list) -> str:
    """| name | precision@1 | precision@10 |, a mean over runs with half the spread where there are several."""
    a = np.array(runs)
    cells = [f"{m:.3f}" + (f" ±{h:.3f}" if len(runs) > 1 else "") for m, h in zip(a.mean(0), (a.max(0) - a.min(0)) / 2)]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="shard-fasta folder of the training records")
    p.add_argument(
        "--val", required=True, action="append",
        help="records no model trained on, scored (any input gene-ae reads); repeat it to score the same models on "
        "more sets (the first the val split choices are made on, the others unseen sets scored once)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", default="0,1,2", help="train.seed of each model of a variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--variant", action="append", default=[], metavar="NAME=KEY=VALUE,...",
        help="a model config's overrides under a name (repeatable; default: the three of VARIANTS)",
    )  # fmt: skip
    p.add_argument("--baselines", default=BASELINES, help="untrained methods scored once beside the models")
    p.add_argument("--labels", help="a labelled set: same-label precision@1 / @10 of every method (see above)")
    p.add_argument("--out", help="also write the tables here")
    args = p.parse_args()
    tagged = list(iter_input(args.labels, ReaderConfig())) if args.labels else []
    tagged_seqs, tags = [r.tokens for r in tagged], [r.label for r in tagged]
    precisions: list[str] = []
    sets = {path: [r.tokens for r in iter_input(path, ReaderConfig())] for path in args.val}
    variants = {name: overrides(rest) for name, _, rest in (v.partition("=") for v in args.variant)} or VARIANTS
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    lines: dict[str, list[str]] = {path: [] for path in sets}
    for name, settings in variants.items():
        runs: dict[tuple[str, str], list[np.ndarray]] = {}
        for seed in seeds:
            cfg = load_config(None, [f"train.seed={seed}", *settings])
            cfg = replace(cfg, data=replace(cfg.data, path=args.data, loader_workers=1))
            model = train_in_process(cfg, args.steps, args.threads, f"{name}, seed {seed}")
            encoder = Encoder(model)
            named = ("gene-ae", f"gene-ae@{encoder.dim}bit", "gene-ae@64b")  # float, signs, 64 bytes
            for path, seqs in sets.items():
                for method, r in scored(named, encoder, seqs).items():
                    runs.setdefault((path, method), []).append(np.array(recall_cells(r)))
                    shown = np.round(runs[path, method][-1], 3).tolist()
                    print(f"{path}: {name}, seed {seed}: {method} {shown}", file=sys.stderr, flush=True)
            if tagged:
                for method, r in labelled(named, encoder, tagged_seqs, tags).items():
                    runs.setdefault(("labels", method), []).append(np.array(list(r.values())))
        for (path, method), r in runs.items():
            if path == "labels":
                precisions.append(precision_row(f"{name}: {method}", r))
            else:
                lines[path].append(recall_row(f"{name}: {method}", r))
    if args.baselines:
        for path, seqs in sets.items():
            for method, r in scored(tuple(args.baselines.split(",")), None, seqs).items():
                lines[path].append(recall_row(f"(no training) {method}", [recall_cells(r)]))
    if tagged:
        plain = (*args.baselines.split(","), "7-mer") if args.baselines else ("7-mer",)
        for method, r in labelled(tuple(dict.fromkeys(plain)), None, tagged_seqs, tags).items():
            precisions.append(precision_row(f"(no training) {method}", [list(r.values())]))
    out = [f"{args.steps} steps a model, seeds {args.seeds} (mean ±half the spread), 200 copies a divergence; "
           f"{time.perf_counter() - start:.0f} s"]  # fmt: skip
    for path, seqs in sets.items():
        out += ["", f"{path}: {len(seqs):,} records", "", recall_head("model: method", DIVERGENCES), *lines[path]]
    if tagged:
        out += ["", f"{args.labels}: {len(tagged):,} records, same-label precision (leave one out)", "",
                "| model: method | precision@1 | precision@10 |", "|---|---|---|", *precisions]  # fmt: skip
    return emit("\n".join(out) + "\n", args.out)


if __name__ == "__main__":
    sys.exit(main())
