"""Training for a study, the two ways the benchmarks need it, both through gene_ae.train's own code:

- `train_in_process`: the real train step (gene_ae.train.step.new_state + train_step, the loader call of the
  real loop) in this process, without Ray or MLflow: a study that trains many small models and keeps them
  in memory (encoder_study.py, train_bench.py's timing of the step).
- `train_cli`: `python -m gene_ae.train` as a user runs it, in a child process with its own MLflow store:
  a study that wants the checkpoint a user would get (feature_signal.py, peer_bench.py, sweep.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from gene_ae.config import Config
from gene_ae.model.autoencoder import GeneAE
from gene_ae.train.data import train_loader
from gene_ae.train.step import WorkerState, batch_loss, new_state, optimise, train_step


def in_process_state(cfg: Config, device: torch.device | str = "cpu") -> WorkerState:
    """A seeded fresh model on `device` with the real optimiser, schedule and negative queue."""
    torch.manual_seed(cfg.train.seed)
    return new_state(GeneAE(cfg.model).to(device).train(), cfg)


def study_batches(cfg: Config, steps: int) -> object:
    """Rank 0's batches for `steps` steps, as the real loop asks its loader for them."""
    return train_loader(cfg.data, 0, steps, seed=cfg.train.seed * 7919, features=cfg.model.features)


def train_in_process(
    cfg: Config, steps: int, threads: int, log: str, every: int = 50,
    extra: Callable[[GeneAE], tuple[torch.Tensor, dict[str, float]]] | None = None,
) -> GeneAE:  # fmt: skip
    """`steps` real train steps (schedule set for `steps`) in one process on the CPU; the model in eval.
    Progress goes to stderr every `every` steps, tagged `log`. `extra(model)`: a study's own term added to each
    step's loss, and its metrics (benchmarks/mined_pairs.py)."""
    torch.set_num_threads(threads)
    cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    device = torch.device("cpu")
    state = in_process_state(cfg, device)
    start = time.perf_counter()
    for batch in study_batches(cfg, steps):
        more: dict[str, float] = {}
        if extra is None:
            metrics = train_step(state, batch, cfg, device)
        else:
            loss, metrics = batch_loss(state.model, batch, cfg, state.step, device, state.queue)
            term, more = extra(state.model)
            optimise(state, loss + term, cfg)
            metrics.update(more)
        if state.step % every == 0 or state.step == steps:
            shown = {k: round(v, 4) for k, v in metrics.items() if k in ("loss_rec", "accuracy", "loss_nce", *more)}
            print(f"[{log}] step {state.step} {shown} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
        if state.step >= steps:
            break
    return state.model.eval()


def train_cli(
    shards: Path, work: Path, name: str, steps: int, extra: Sequence[str] = (), env: dict[str, str] | None = None
) -> tuple[Path, float]:
    """`python -m gene_ae.train --data SHARDS --steps N --name NAME` (+ extra flags) with runs under work/runs
    and MLflow in work/mlflow.db (unless env names another store), nothing registered; (the run's newest
    checkpoint, seconds). A failed run raises SystemExit with the end of its output."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db", "MLFLOW_DISABLE_TELEMETRY": "true",
           "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}  # fmt: skip
    cmd = [sys.executable, "-m", "gene_ae.train", "--data", str(shards), "--steps", str(steps), "--name", name,
           "--storage", str(work / "runs"), "--register", "", *extra]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.run(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=work).returncode
    seconds = time.perf_counter() - start
    text = log.read_text()
    if rc != 0:
        raise SystemExit(f"training {name} failed (exit {rc}); {log}:\n{text[-3000:]}")
    found = re.search(r"; checkpoint (\S+);", text)
    if not found:
        raise SystemExit(f"training {name}: no checkpoint path in its output ({log})")
    return Path(found.group(1)), seconds


def finished_checkpoint(work: Path, name: str) -> Path | None:
    """The newest checkpoint of a `train_cli` run under work that finished before, or None."""
    done = work / "runs" / name
    if not (done / "finished_step").is_file():
        return None
    found = sorted(p for p in done.glob("checkpoint_*") if (p / "model.pt").is_file())
    return found[-1] if found else None
