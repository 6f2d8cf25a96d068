"""The per-worker loop Ray Train runs on every rank: step -> log -> validate -> checkpoint, until the end."""

from __future__ import annotations

import logging
import os
import tempfile
import time

import torch

from gene_ae.config import Config
from gene_ae.train.data import train_loader, val_records
from gene_ae.train.step import WorkerState, setup_worker, train_step
from gene_ae.train.validate import run_validation


def _quiet_report_logs() -> None:
    """Ray Train logs every report, its metrics dict included, at INFO from a logger named by its file
    path (outside `ray.train`, so RunConfig's log level misses it); our own progress lines say enough."""
    for name in list(logging.root.manager.loggerDict):
        if name.replace("\\", "/").endswith("train/v2/_internal/execution/context.py"):
            logging.getLogger(name).setLevel(logging.WARNING)


# Test hook, not configuration: rank 1 exits at this step on a run's first attempt (tests/test_train.py).
FAIL_AT_STEP_ENV = "GENE_AE_TEST_FAIL_AT_STEP"


class _Progress:
    """Running means of the step metrics over `log_every` steps, logged to MLflow and printed by rank 0."""

    def __init__(self, cfg: Config, world: int, logger: _MetricLogger | None):
        self.cfg, self.world, self.logger = cfg, world, logger
        self.sums: dict[str, float] = {}
        self.bases, self.n, self.tick = 0, 0, time.perf_counter()

    def add(self, metrics: dict[str, float]) -> None:
        self.bases += metrics.pop("bases") * self.world
        self.n += 1
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def flush(self, step: int, lr: float) -> dict[str, float]:
        means = {k: v / max(self.n, 1) for k, v in self.sums.items()}
        means.update(lr=lr, bases_per_s=self.bases / (time.perf_counter() - self.tick))
        self.sums, self.bases, self.n, self.tick = {}, 0, 0, time.perf_counter()
        if self.logger:
            self.logger.log(means, step)
            print(
                f"[gene-ae] step {step}/{self.cfg.train.steps} loss {means['loss']:.3f} "
                f"bits/base {means['bits_per_base']:.3f} acc {means['accuracy']:.3f} "
                f"nce {means.get('loss_nce', 0):.3f} {means['bases_per_s']:,.0f} bases/s",
                flush=True,
            )
        return means


def report(state: WorkerState, cfg: Config, metrics: dict[str, float], rank: int, save: bool) -> None:
    """ray.train.report every step (all ranks, as Ray requires); rank 0 attaches a checkpoint when due."""
    import ray.train

    from gene_ae.model import checkpoint

    if not (save and rank == 0):
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(tmp, cfg, state.model, state.trainer_state())
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _maybe_fail(state: WorkerState, rank: int) -> None:
    fail_at = int(os.environ.get(FAIL_AT_STEP_ENV, "-1"))
    if fail_at >= 0 and rank == 1 and state.step == fail_at and not state.restored:
        import ray.train

        # Blocks until the controller has registered every report made so far (the earlier checkpoint),
        # so the restart resumes from it whatever the machine's load.
        ray.train.get_all_reported_checkpoints(timeout_s=120)
        print(f"[gene-ae] test hook: rank 1 exits at step {state.step}", flush=True)
        os._exit(1)


def train_loop_per_worker(config: dict) -> None:
    """One rank: step -> maybe log -> maybe validate -> maybe checkpoint, until cfg.train.steps."""
    import ray.train
    import ray.train.torch

    _quiet_report_logs()
    cfg = Config.from_dict(config["cfg"])
    t = cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(t.threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, ctx.get_local_world_size())))
    torch.manual_seed(t.seed)
    device = ray.train.torch.get_device()
    state = setup_worker(cfg, device)
    if state.step and rank == 0:
        print(f"[gene-ae] resumed from checkpoint at step {state.step}", flush=True)
    logger = _MetricLogger(config["tracking_uri"], config["run_id"]) if rank == 0 else None
    val = val_records(cfg.data) if rank == 0 else []
    progress = _Progress(cfg, world, logger)
    state.model.train()
    if state.step >= t.steps:  # restored at or past the end: nothing left (the driver refuses this up front)
        if rank == 0:
            print(f"[gene-ae] nothing to train: the checkpoint is at step {state.step} of {t.steps}", flush=True)
        return
    for batch in train_loader(
        cfg.data, rank, t.steps - state.step, seed=t.seed * 7919 + state.step, features=cfg.model.features
    ):
        _maybe_fail(state, rank)
        progress.add(train_step(state, batch, cfg, device))
        last = state.step >= t.steps
        metrics: dict[str, float] = {"step": state.step}
        if state.step % t.log_every == 0 or last:
            metrics.update(progress.flush(state.step, state.sched.get_last_lr()[0]))
        if rank == 0 and (state.step % t.steps_per_epoch == 0 or last):
            metrics.update(run_validation(state, cfg, val, device, logger))
        if state.step % t.checkpoint_every == 0 or last:
            report(state, cfg, metrics, rank, save=True)
        if last:  # the loader yields exactly the steps left; this makes the end not depend on it
            break


class _MetricLogger:
    """Rank 0's view of the driver's MLflow run: metrics only, by run id (no global active run)."""

    def __init__(self, uri: str, run_id: str):
        from mlflow import MlflowClient

        self.client, self.run_id = MlflowClient(uri), run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
