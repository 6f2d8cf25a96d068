"""Sweep the model's levers at equal compute, scored on the training data's own val split only.

Each variant is one real `python -m gene_ae.train` run (Ray, 2 workers) with `--set` overrides on top of
today's defaults and a step count that gives every variant the same number of window bases
(steps x batch x window), so a shorter window gets more steps, as it would in the same wall-clock budget.
Scores are the final validation metrics the trainer logs to MLflow: recall@1 of 10/20/30 %-mutated val
records against the originals (whole records, embedded like the Encoder) and reconstruction accuracy on
held-out windows. Evaluation data (dog genes, the eval sets) is never touched here. The sweeps of earlier
architectures (docs/RESULTS.md) pinned their own base overrides; they live in this file's git history.

    python benchmarks/sweep.py --data SHARDS --out sweep-out [--only base,kmer-4-6] [--budget 4.4e6]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import emit
from study import train_cli

from gene_ae.config import DataConfig

REPO = Path(__file__).resolve().parent.parent
BATCH, WINDOW = DataConfig.batch_size, DataConfig.window
# name -> overrides on top of the defaults. A window must be set on model and data together.
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "kmer-4-6": ["model.kmer_sizes=4,6"],
    "kmer-6-8": ["model.kmer_sizes=6,8"],
    "kmer-5-7-9": ["model.kmer_sizes=5,7,9"],
    "kmer-7": ["model.kmer_sizes=7"],
    "frozen-kmers": ["model.freeze_kmers=true"],
    "trunk-path": ["model.vector_trunk=true"],
    "no-siblings": ["data.sibling_ratio=0"],
    "siblings0.4": ["data.sibling_ratio=0.4"],
    "view0.2": ["data.view_divergence=0.2"],
    "batch32": ["data.batch_size=32"],
    "temp0.1": ["train.temperature=0.1"],
    "window256": ["model.window=256", "data.window=256"],
    "variational": ["model.variational=true", "model.latent_levels=0"],
    "rec-only": ["train.contrastive_weight=0"],
}

METRICS = (
    "val_recall_at_1_d10",
    "val_recall_at_1_d20",
    "val_recall_at_1_d30",
    "val_recall_at_1",
    "val_accuracy",
    "val_bits_per_base",
)


def setting(overrides: list[str], key: str, default: int) -> int:
    for o in overrides:
        if o.startswith(f"{key}="):
            return int(o.split("=", 1)[1])
    return default


def run_variant(name: str, overrides: list[str], args: argparse.Namespace) -> dict:
    window, batch = setting(overrides, "data.window", WINDOW), setting(overrides, "data.batch_size", BATCH)
    steps = max(20, round(args.budget / (batch * window)))
    sets = [*overrides, *args.set, f"train.steps_per_epoch={steps}", f"train.checkpoint_every={steps}"]
    sets += [f"train.warmup_steps={max(10, steps // 8)}", f"train.log_every={max(1, steps // 6)}"]
    extra = ["--experiment", "gene-ae-sweep"] + [f for s in sets for f in ("--set", s)]
    print(f"[sweep] {name}: {steps} steps at window {window}: {' '.join(sets)}", flush=True)
    _, seconds = train_cli(args.data, args.out, f"sweep-{name}", steps, extra, {"MLFLOW_TRACKING_URI": args.uri})
    import mlflow

    client = mlflow.MlflowClient(args.uri)
    exp = client.get_experiment_by_name("gene-ae-sweep")
    run = client.search_runs([exp.experiment_id], f"attributes.run_name = 'sweep-{name}'", max_results=1)[0]
    row = {"variant": name, "overrides": " ".join(overrides) or "(defaults)", "steps": steps, "window": window}
    row.update({k: run.data.metrics.get(k, float("nan")) for k in METRICS})
    row["minutes"] = seconds / 60
    row["run_id"] = run.info.run_id
    return row


def table(rows: list[dict]) -> str:
    head = "| variant | overrides | steps | recall@1 10 % | 20 % | 30 % | mean | rec. accuracy | bits/base | minutes |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['overrides']} | {r['steps']} | {r['val_recall_at_1_d10']:.3f} | "
            f"{r['val_recall_at_1_d20']:.3f} | {r['val_recall_at_1_d30']:.3f} | {r['val_recall_at_1']:.3f} | "
            f"{r['val_accuracy']:.3f} | {r['val_bits_per_base']:.3f} | {r['minutes']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="shard directory (training data only)")
    p.add_argument("--out", type=Path, default=Path("sweep-out"))
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    budget = 135 * BATCH * WINDOW  # one epoch of the defaults
    p.add_argument("--budget", type=float, default=budget, help="window bases per variant")
    p.add_argument("--set", action="append", default=[], help="extra override for every variant")
    args = p.parse_args(argv)
    args.data, args.out = args.data.resolve(), args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.uri = f"sqlite:///{args.out / 'mlflow.db'}"
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    results = args.out / "sweep.json"
    done = {r["variant"]: r for r in json.loads(results.read_text())} if results.is_file() else {}
    for name in names:
        if name in done:
            continue
        done[name] = run_variant(name, VARIANTS[name], args)
        results.write_text(json.dumps(list(done.values()), indent=1))
        print(table([done[name]]).splitlines()[-1], flush=True)
    rows = [done[n] for n in VARIANTS if n in done]
    text = (
        f"gene-ae sweep: {args.budget:,.0f} window bases per variant (default batch {BATCH}), extra overrides "
        f"{' '.join(args.set) or 'none'}; data {args.data}; scores from the val split (recall@1 of mutated whole "
        f"records; reconstruction accuracy on each record's first window).\n\n{table(rows)}\n"
    )
    return emit(text, args.out / "sweep.md")


if __name__ == "__main__":
    sys.exit(main())
