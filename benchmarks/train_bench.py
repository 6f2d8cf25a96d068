"""Benchmark gene-ae training speed: the model alone, the data loader alone, and real Ray Train runs.

    .venv/bin/python benchmarks/train_bench.py [--steps N] [--ray-steps N] [--quick] [--out FILE]

Three parts, one markdown table (select with --parts model,loader,ray):

- model: forward + backward + AdamW step (gene_ae.train.batch_loss, gradient clipping, optimiser step, as
  one step of the training loop, without DDP) of the default model and of gene_ae/configs/demo.toml's model,
  in one plain process on CPU with torch threads = 1 and 2, and on CUDA with bf16 autocast when a GPU is
  visible. Batches come from the real loader and are made before the clock starts. Bases/s counts real
  bases of originals + views, exactly as batch_loss does. Each configuration runs in a fresh spawned process,
  so its peak RSS (resource.getrusage ru_maxrss) is its own.
- loader: gene_ae.train.data.train_loader alone (loader_workers 0 and 1) on shards made by shard-fasta from
  data/genefam/chimp_sample.tsv.gz, bases/s after the first batch (start-up is reported apart), and the
  ratio loader / model consumption (the same config's fastest CPU model row; target >= 10x).
- ray: `python -m gene_ae.train --config gene_ae/configs/demo.toml --workers W` through the real CLI, with
  MLFLOW_TRACKING_URI on a temporary sqlite file. Bases/s is parsed from the "[gene-ae] step ... bases/s"
  lines (all ranks together); the first interval is dropped as warm-up. Validation and checkpoints happen
  only at the last step, after the last timed interval. Peak RSS: `ps` sampled once a second over the
  CLI's process tree (RayTrainWorker processes, the CLI driver, and the whole tree with Ray's own daemons).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from common import emit, machine

REPO = Path(__file__).resolve().parents[1]
GENES = REPO / "data" / "genefam" / "chimp_sample.tsv.gz"
DEMO_TOML = REPO / "gene_ae" / "configs" / "demo.toml"
CONFIGS: dict[str, Path | None] = {"default": None, "demo": DEMO_TOML}
# --quick: the tests' tiny model (tests/configs/tiny.toml) on top of each config, so every path runs in seconds.
QUICK_SET = [
    "model.channels=32",
    "model.embed_dim=16",
    "model.lstm_hidden=32",
    "model.vector_dim=32",
    "model.window=256",
    "model.downsample=4",
    "data.window=256",
    "data.batch_size=8",
    "data.shuffle_buffer=50",
    "data.bucket_batches=2",
    "data.val_records=32",
]
STEP_LINE = re.compile(r"\[gene-ae\] step (\d+)/(\d+) .* ([\d,]+) bases/s")
PARTS = ("model", "loader", "ray")


# ---------------------------------------------------------------- helpers


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(who).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _child_main(conn: Connection, fn: Callable[..., dict], kwargs: dict) -> None:
    if sys.platform.startswith("linux"):
        multiprocessing.set_start_method("fork", force=True)  # loader workers start as in a Ray worker
    try:
        conn.send(("ok", fn(**kwargs)))
    except BaseException as exc:  # report any failure to the parent, then exit non-zero
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


def isolated(fn: Callable[..., dict], **kwargs: Any) -> dict:
    """Run fn(**kwargs) in a fresh spawned, non-daemon process (own peak RSS and torch threads, CUDA-safe)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child, fn, kwargs))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "error", "child process died without a result"
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__}({kwargs}): {value}")
    return value


def resolve(config: str, shards: Path, quick: bool, loader_workers: int = 0):
    """The run config as gene_ae.train resolves it (the data window caps the model's), on these shards."""
    from gene_ae.config import Config, load_config

    cfg = load_config(CONFIGS[config], QUICK_SET if quick else [])
    cfg.data.path = str(shards)
    cfg.data.loader_workers = loader_workers
    if cfg.data.window > cfg.model.window:
        cfg.model.window = cfg.data.window
    return Config.from_dict(cfg.to_dict())


def describe(config: str, shards: Path, quick: bool) -> str:
    from gene_ae.model.autoencoder import GeneAE, count_parameters

    cfg = resolve(config, shards, quick)
    params = count_parameters(GeneAE(cfg.model))
    return f"{config} (window {cfg.data.window}, batch {cfg.data.batch_size}, {params / 1e6:.2f} M params)"


def make_shards(out: Path) -> Path:
    """shard-fasta the bundled chimpanzee genes into out (in-process, quiet)."""
    from shard_tools.cli import shard_fasta_main

    rc = shard_fasta_main([str(GENES), str(out), "--quiet", "--label-column", "class"])
    if rc != 0:
        raise RuntimeError(f"shard-fasta failed on {GENES} (exit {rc})")
    return out


# ---------------------------------------------------------------- part 1: the model alone (in a child)


def model_child(config: str, shards: str, quick: bool, device: str, threads: int, steps: int, warmup: int) -> dict:
    """Time `steps` training steps after `warmup` untimed ones; batches are made before the clock starts."""
    import torch
    from study import in_process_state, study_batches

    from gene_ae.train.step import train_step

    torch.set_num_threads(threads)
    cfg = resolve(config, Path(shards), quick)
    dev = torch.device(device)
    batches = list(study_batches(cfg, warmup + steps))
    state = in_process_state(cfg, dev)
    bases, start = 0, 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            bases, start = 0, time.perf_counter()
        metrics = train_step(state, batch, cfg, dev)  # the real step; its .item() calls sync the GPU every step
        bases += metrics["bases"]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"bases_per_s": bases / seconds, "steps_per_s": steps / seconds, "rss_mb": peak_rss_mb()}
    if dev.type == "cuda":
        out["gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu_name"] = torch.cuda.get_device_name()
    return out


def bench_model(shards: Path, args: argparse.Namespace, gpu: bool) -> list[dict]:
    rows = []
    for config in CONFIGS:
        what = describe(config, shards, args.quick)
        settings: list[tuple[str, int]] = [("cpu", 1), ("cpu", 2)] + ([("cuda", 2)] if gpu else [])
        for device, threads in settings:
            setting = f"cpu, torch threads {threads}" if device == "cpu" else "cuda, bf16 autocast"
            print(f"train_bench: model {config} {setting} ...", file=sys.stderr, flush=True)
            kw = dict(config=config, shards=str(shards), quick=args.quick, device=device, threads=threads)
            r = isolated(model_child, **kw, steps=args.steps, warmup=args.warmup)
            notes = "fwd + bwd + clip + AdamW; batch_loss bases"
            if device == "cuda":
                notes += f"; {r['gpu_name']}, peak GPU memory {r['gpu_mb']:,.0f} MB"
            rows.append(
                dict(
                    part="model",
                    config=config,
                    what=what,
                    setting=setting,
                    device=device,
                    timed=f"{args.steps} steps ({r['steps_per_s']:.2f}/s)",
                    bases_per_s=r["bases_per_s"],
                    rss=f"{r['rss_mb']:,.0f}",
                    notes=notes,
                )
            )
        if not gpu:
            rows.append(dict(part="model", config=config, what=what, setting="cuda", notes="no GPU here"))
    return rows


# ---------------------------------------------------------------- part 2: the loader alone (in a child)


def loader_child(config: str, shards: str, quick: bool, workers: int, batches: int) -> dict:
    """Iterate `batches` batches; rate counted after the first batch (worker start-up reported apart)."""
    from gene_ae.train.data import train_loader

    cfg = resolve(config, Path(shards), quick, loader_workers=workers)
    start = time.perf_counter()
    first, bases = 0.0, 0
    for i, batch in enumerate(train_loader(cfg.data, rank=0, batches=batches, seed=0)):
        if i == 0:
            first = time.perf_counter()
            continue
        bases += int(batch["lengths"].sum()) + int(batch["view_lengths"].sum())
    seconds = time.perf_counter() - first
    rss = max(peak_rss_mb(), peak_rss_mb(resource.RUSAGE_CHILDREN))
    return {"bases_per_s": bases / seconds, "startup_s": first - start, "rss_mb": rss}


def bench_loader(shards: Path, args: argparse.Namespace, model_rows: list[dict]) -> list[dict]:
    rows = []
    for config in CONFIGS:
        what = describe(config, shards, args.quick)
        cpu = [r["bases_per_s"] for r in model_rows if r["config"] == config and r.get("device") == "cpu"]
        cuda = [r["bases_per_s"] for r in model_rows if r["config"] == config and r.get("device") == "cuda"]
        for workers in (0, 1):
            print(f"train_bench: loader {config} loader_workers={workers} ...", file=sys.stderr, flush=True)
            kw = dict(config=config, shards=str(shards), quick=args.quick, workers=workers)
            r = isolated(loader_child, **kw, batches=args.loader_batches)
            ratio = f"{r['bases_per_s'] / max(cpu):.1f}x" if cpu else "n/a (model part not run)"
            notes = f"start-up {r['startup_s']:.2f} s; ratio vs the fastest CPU model row; target >= 10x"
            if cuda:
                notes += f"; vs cuda {r['bases_per_s'] / max(cuda):.2f}x"
            rows.append(
                dict(
                    part="loader",
                    config=config,
                    what=what,
                    setting=f"loader_workers={workers}",
                    timed=f"{args.loader_batches - 1} batches",
                    bases_per_s=r["bases_per_s"],
                    ratio=ratio,
                    rss=f"{r['rss_mb']:,.0f}",
                    notes=notes,
                )
            )
    return rows


# ---------------------------------------------------------------- part 3: Ray Train through the CLI


class TreeSampler(threading.Thread):
    """Samples `ps` once a second over a process tree: peak RSS of each Ray Train rank (a RayTrainWorker
    process whose parent is not one) alone and with its forked loader workers, of the driver, of the tree."""

    def __init__(self, root: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop = threading.Event()
        self.rank = self.rank_group = self.ranks_sum = self.driver = self.tree = 0.0
        self.ranks_seen: set[int] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sample()
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            self.stop.wait(self.interval)

    def sample(self) -> None:
        out = subprocess.run(["ps", "-eo", "pid=,ppid=,rss=,args="], capture_output=True, text=True, timeout=30)
        procs: dict[int, tuple[int, float, str]] = {}
        for line in out.stdout.splitlines():
            parts = line.split(None, 3)
            if len(parts) >= 3:
                procs[int(parts[0])] = (int(parts[1]), int(parts[2]) / 1024, parts[3] if len(parts) > 3 else "")
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)

        def subtree(root: int) -> list[int]:
            found, todo = [], [root]
            while todo:
                pid = todo.pop()
                if pid in procs:
                    found.append(pid)
                    todo.extend(children.get(pid, []))
            return found

        def is_worker(pid: int) -> bool:
            return pid in procs and "RayTrainWorker" in procs[pid][2]

        tree = subtree(self.root)
        ranks = [p for p in tree if is_worker(p) and not is_worker(procs[p][0])]
        groups = [sum(procs[q][1] for q in subtree(r)) for r in ranks]
        self.ranks_seen.update(ranks)
        self.rank = max([self.rank] + [procs[r][1] for r in ranks])
        self.rank_group = max([self.rank_group] + groups)
        self.ranks_sum = max(self.ranks_sum, sum(groups))
        self.driver = max(self.driver, procs[self.root][1] if self.root in procs else 0.0)
        self.tree = max(self.tree, sum(procs[p][1] for p in tree))


def bench_ray(shards: Path, tmp: Path, args: argparse.Namespace, workers: int) -> dict:
    steps, log_every = args.ray_steps, args.log_every
    what = describe("demo", shards, args.quick)
    cmd = [
        sys.executable, "-m", "gene_ae.train", "--data", str(shards), "--config", str(DEMO_TOML),
        "--workers", str(workers), "--steps", str(steps), "--set", f"train.log_every={log_every}",
        "--set", f"train.steps_per_epoch={steps}", "--set", f"train.checkpoint_every={steps}",
        "--name", f"train-bench-w{workers}", "--storage", str(tmp / "runs"), "--experiment", "train-bench",
        "--register", "",
    ]  # fmt: skip
    for item in QUICK_SET if args.quick else []:
        cmd += ["--set", item]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }
    print(f"train_bench: $ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    rates: dict[int, float] = {}  # by step: Ray may forward a worker's line more than once
    tail: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    timer = threading.Timer(args.ray_timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            m = STEP_LINE.search(line)
            if m:
                step = int(m.group(1))
                if step not in rates:
                    print(f"train_bench:   {line.strip()}", file=sys.stderr, flush=True)
                rates[step] = float(m.group(3).replace(",", ""))
        rc = proc.wait()
    finally:
        timer.cancel()
        sampler.stop.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
    wall = time.perf_counter() - start
    row: dict = dict(part="ray", config="demo", what=what, setting=f"--workers {workers}")
    if rc != 0 or not rates:
        why = next((t for t in reversed(tail) if "error" in t.lower()), tail[-1] if tail else "no output")
        row["notes"] = f"failed (exit {rc}): {why[:200]}"
        return row
    ordered = [rates[k] for k in sorted(rates)]
    timed = ordered[1:] if len(ordered) > 1 else ordered
    spread = f"{min(timed):,.0f}-{max(timed):,.0f}"
    rss = (
        f"rank {sampler.rank:,.0f}, with its loader worker {sampler.rank_group:,.0f}, "
        f"all ranks {sampler.ranks_sum:,.0f}; driver {sampler.driver:,.0f}"
    )
    threads = max(1, (os.cpu_count() or 1) // workers)
    row.update(
        timed=f"{len(timed)} x {log_every} steps" + ("" if len(rates) > 1 else " (no warm-up interval dropped)"),
        bases_per_s=sum(timed) / len(timed),
        rss=f"{rss}; tree {sampler.tree:,.0f}",
        notes=f"interval range {spread}; {threads} torch thread(s)/worker; wall {wall:.0f} s incl. Ray start, "
        f"validation, checkpoint, MLflow logging",
    )
    if not sampler.ranks_seen:
        row["notes"] += "; no RayTrainWorker process seen by ps"
    return row


# ---------------------------------------------------------------- report


def table(rows: list[dict]) -> str:
    lines = [
        "| part | config | setting | timed | bases/s | loader / model | peak RSS MB | notes |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        rate = f"{r['bases_per_s']:,.0f}" if "bases_per_s" in r else ""
        lines.append(
            f"| {r['part']} | {r['what']} | {r['setting']} | {r.get('timed', '')} | {rate} | {r.get('ratio', '')} "
            f"| {r.get('rss', '')} | {r.get('notes', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="timed model steps per row (default 20; --quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed model steps first (default 2; --quick 1)")
    p.add_argument("--loader-batches", type=int, default=None, help="loader batches per row (default 300; quick 20)")
    p.add_argument("--ray-steps", type=int, default=None, help="steps per Ray run (default 100; --quick 4)")
    p.add_argument("--log-every", type=int, default=None, help="Ray log interval in steps (default 10; --quick 2)")
    p.add_argument("--ray-workers", default="1,2", help="Ray runs to make, comma-separated worker counts")
    p.add_argument("--ray-timeout", type=float, default=3600, help="seconds before a Ray run is killed")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help="tiny model and sizes: a smoke test, not a measurement")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = p.parse_args(argv)
    for name, full, quick in (
        ("steps", 20, 3),
        ("warmup", 2, 1),
        ("loader_batches", 300, 20),
        ("ray_steps", 100, 4),
        ("log_every", 10, 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if unknown := set(parts) - set(PARTS):
        p.error(f"unknown part(s) {', '.join(sorted(unknown))} (choose from {', '.join(PARTS)})")
    if args.steps < 1 or args.loader_batches < 2 or args.log_every < 1 or args.ray_steps < args.log_every:
        p.error("need --steps >= 1, --loader-batches >= 2, --log-every >= 1 and --ray-steps >= --log-every")
    ray_workers = [int(w) for w in args.ray_workers.split(",") if w.strip()]

    import torch

    gpu = torch.cuda.is_available()
    load_before = os.getloadavg()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="train-bench-") as name:
        tmp = Path(name)
        shards = make_shards(tmp / "shards")
        model_rows = bench_model(shards, args, gpu) if "model" in parts else []
        rows += model_rows
        if "loader" in parts:
            rows += bench_loader(shards, args, model_rows)
        if "ray" in parts:
            for w in ray_workers:
                rows.append(bench_ray(shards, tmp, args, w))
                shutil.rmtree(tmp / "runs", ignore_errors=True)
    load_after = os.getloadavg()
    header = (
        f"gene-ae training benchmark{' (--quick: tiny model, NOT a measurement)' if args.quick else ''} on "
        f"{machine()}, torch {torch.__version__}, GPU: {torch.cuda.get_device_name() if gpu else 'no GPU here'}; "
        "load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (numbers are only meaningful on an idle machine).\n"
        f"Data: {GENES.relative_to(REPO)} -> shard-fasta. Bases/s = real bases of windows + their mutated views per "
        "second (gene_ae.train.batch_loss's count). model = one plain process running the real train step "
        "(study.py), batches made before timing; "
        "loader = train_loader alone; ray = `python -m gene_ae.train` (real CLI, gloo DDP, all ranks together, "
        "first log interval dropped). Peak RSS: model/loader rows = ru_maxrss of a fresh process "
        "(or its loader worker); ray rows = `ps` sampled every second over the CLI's process tree (sums count "
        "pages shared after fork once per process; tree = driver + Ray daemons + workers)."
    )
    return emit(f"{header}\n\n{table(rows)}\n", args.out)


if __name__ == "__main__":
    sys.exit(main())
