"""`python -m gene_ae.train`: Ray Train (TorchTrainer, DDP) on WebDataset shards, tracked in MLflow.

Locally it starts its own Ray on this machine's CPUs; under `ray job submit` (RAY_ADDRESS set) it
joins the cluster. The driver owns the MLflow run; rank 0 logs metrics into it; the driver logs and
registers the encoder from the final checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gene_ae.config import Config, load_config
from gene_ae.data import train_loader, val_records
from gene_ae.model import GeneAE, NegativeQueue, contrastive_loss, kl_loss, reconstruction_loss
from shard_tools.alphabet import PAD

LN2 = math.log(2)


# ---------------------------------------------------------------- the per-worker loop


def lr_lambda(cfg: Config):
    t = cfg.train

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def batch_loss(
    model, batch: dict, cfg: Config, step: int, device: torch.device, queue: NegativeQueue | None = None
) -> tuple[torch.Tensor, dict]:
    """Reconstruction of the windows (masked to real bases) + InfoNCE between windows and views, with
    siblings as hard negatives (+ KL).

    With a queue, earlier batches' vectors are extra negatives, and this batch's join the queue."""

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(batch[name]).astype(np.int64)).to(device)

    x = tensor("tokens")
    mask = x != PAD
    # Views and siblings only need the search vector: without the trunk path that is the k-mer bags
    # alone, so they cost little beside the autoencoder's pass over the windows.
    contrastive = cfg.train.contrastive_weight > 0
    names = ["view"] + (["sibling"] if "sibling" in batch else [])
    others = torch.cat([tensor(name) for name in names]) if contrastive else None
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(x, mask, others)
        rec, acc = reconstruction_loss(out["logits"].float(), x, mask)
        loss = rec
        metrics = {"loss_rec": rec.item(), "bits_per_base": rec.item() / LN2, "accuracy": acc.item()}
        if contrastive:
            vecs = out["others"].float().split(len(x))
            vec = out["vector"].float()
            sibling = vecs[1] if len(vecs) > 1 else None
            nce = contrastive_loss(vec, vecs[0], cfg.train.temperature, sibling, queue.get() if queue else None)
            if queue is not None:
                queue.push(torch.cat([vec, vecs[0]]))
            loss = loss + cfg.train.contrastive_weight * nce
            metrics["loss_nce"] = nce.item()
        if out["logvar"] is not None:
            kl = kl_loss(out["code"].float(), out["logvar"].float(), cfg.train.free_bits)
            loss = loss + cfg.train.kl_weight * min(1.0, step / max(1, cfg.train.kl_anneal_steps)) * kl
            metrics["loss_kl"] = kl.item()
    metrics["loss"] = loss.item()
    metrics["bases"] = int(mask.sum())
    return loss, metrics


VAL_DIVERGENCES = (0.1, 0.2, 0.3)


@torch.no_grad()
def validation_metrics(model: GeneAE, cfg: Config, records: list[np.ndarray], device: torch.device) -> dict[str, float]:
    """Held-out metrics from the val split only, so defaults can be chosen without touching eval data.

    Reconstruction (loss, bits/base, accuracy) on each record's first window; retrieval as `gene-ae
    eval` measures it: whole records embedded by the Encoder's tiling, recall@1 of mutated copies
    at 10/20/30 % divergence against the originals, and their mean (the promotion metric).
    """
    from gene_ae.encoder import Encoder
    from gene_ae.evaluate.metrics import mutation_recall

    if not records:
        return {}
    model.eval()
    encoder = Encoder(model, cfg, device)
    rec = encoder.reconstruct_windows([r[: cfg.model.window] for r in records])
    nats = rec.nats / max(rec.bases, 1)
    metrics = {"val_loss": nats, "val_bits_per_base": nats / LN2, "val_accuracy": rec.correct / max(rec.bases, 1)}
    recalls = mutation_recall(encoder.embed_tokens, records, VAL_DIVERGENCES, cfg.train.seed)["recall@1"]
    for d, r in zip(VAL_DIVERGENCES, recalls):
        metrics[f"val_recall_at_1_d{round(d * 100)}"] = r
    metrics["val_recall_at_1"] = float(np.mean(recalls))
    model.train()
    return metrics


def _quiet_report_logs() -> None:
    """Ray Train logs every report, its metrics dict included, at INFO from a logger named by its file
    path (outside `ray.train`, so RunConfig's log level misses it); our own progress lines say enough."""
    for name in list(logging.root.manager.loggerDict):
        if name.replace("\\", "/").endswith("train/v2/_internal/execution/context.py"):
            logging.getLogger(name).setLevel(logging.WARNING)


# Test hook, not configuration: rank 1 exits at this step on a run's first attempt (tests/test_train.py).
FAIL_AT_STEP_ENV = "GENE_AE_TEST_FAIL_AT_STEP"


@dataclass
class WorkerState:
    """What one rank carries through the loop, and what a checkpoint saves and restores."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    queue: NegativeQueue
    step: int = 0
    restored: bool = False

    def trainer_state(self) -> dict:
        return {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "py_rng": random.getstate(),
        }


def setup_worker(cfg: Config, device: torch.device) -> WorkerState:
    """Model, optimiser and schedule for this rank, restored from Ray's newest checkpoint if there is one."""
    import ray.train
    import ray.train.torch

    from gene_ae import checkpoint

    model = GeneAE(cfg.model)
    saved = None
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            module, _ = checkpoint.load_model(d)
            model.load_state_dict(module.state_dict())
            saved = checkpoint.load_trainer_state(d)
    model = ray.train.torch.prepare_model(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    state = WorkerState(model, opt, sched, NegativeQueue(cfg.train.queue_size), restored=restored is not None)
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        state.sched.load_state_dict(saved["scheduler"])
        state.step = saved["step"]
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["py_rng"])
    return state


def train_step(state: WorkerState, batch: dict, cfg: Config, device: torch.device) -> dict[str, float]:
    loss, metrics = batch_loss(state.model, batch, cfg, state.step, device, state.queue)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.train.grad_clip)
    state.opt.step()
    state.sched.step()
    state.step += 1
    return metrics


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


def run_validation(state: WorkerState, cfg: Config, val: list[np.ndarray], device, logger) -> dict[str, float]:
    vm = validation_metrics(getattr(state.model, "module", state.model), cfg, val, device)
    if vm:
        step, per_epoch = state.step, cfg.train.steps_per_epoch
        logger.log({**vm, "epoch": step // per_epoch}, step)
        print(
            f"[gene-ae] epoch {math.ceil(step / per_epoch)} val bits/base "
            f"{vm['val_bits_per_base']:.3f} acc {vm['val_accuracy']:.3f} "
            f"recall@1 10/20/30% {vm['val_recall_at_1_d10']:.3f}/{vm['val_recall_at_1_d20']:.3f}/"
            f"{vm['val_recall_at_1_d30']:.3f}",
            flush=True,
        )
    return vm


def report(state: WorkerState, cfg: Config, metrics: dict[str, float], rank: int, save: bool) -> None:
    """ray.train.report every step (all ranks, as Ray requires); rank 0 attaches a checkpoint when due."""
    import ray.train

    from gene_ae import checkpoint

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
    for batch in train_loader(cfg.data, rank, max(0, t.steps - state.step), seed=t.seed * 7919 + state.step):
        _maybe_fail(state, rank)
        progress.add(train_step(state, batch, cfg, device))
        last = state.step == t.steps
        metrics: dict[str, float] = {"step": state.step}
        if state.step % t.log_every == 0 or last:
            metrics.update(progress.flush(state.step, state.sched.get_last_lr()[0]))
        if rank == 0 and (state.step % t.steps_per_epoch == 0 or last):
            metrics.update(run_validation(state, cfg, val, device, logger))
        if state.step % t.checkpoint_every == 0 or last:
            report(state, cfg, metrics, rank, save=True)


class _MetricLogger:
    """Rank 0's view of the driver's MLflow run: metrics only, by run id (no global active run)."""

    def __init__(self, uri: str, run_id: str):
        from mlflow import MlflowClient

        self.client, self.run_id = MlflowClient(uri), run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


# ---------------------------------------------------------------- the driver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gene_ae.train",
        description="Train the gene-ae conv-LSTM autoencoder with Ray Train on shard-fasta shards; "
        "track in MLflow and register the encoder.",
    )
    from shard_tools import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--data", required=True, help="shard directory written by shard-fasta")
    p.add_argument("--config", help="TOML file with [model], [data], [train] tables")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key")
    p.add_argument("--workers", type=int, help="Ray Train workers (DDP ranks)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, bf16 autocast")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--name", help="run name; rerunning the same name and storage resumes")
    p.add_argument("--storage", help="Ray storage path for checkpoints (default ./runs)")
    p.add_argument("--experiment", help="MLflow experiment")
    p.add_argument("--register", help="registered model name ('' to skip; default gene-ae-encoder)")
    p.add_argument("--alias", help="set this alias (e.g. production) on the new model version")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.set)
    cfg.data.path = str(Path(args.data).resolve())
    for flag, key in (
        ("workers", "workers"),
        ("steps", "steps"),
        ("name", "name"),
        ("storage", "storage"),
        ("experiment", "experiment"),
        ("register", "register"),
        ("alias", "alias"),
    ):
        if getattr(args, flag) is not None:
            setattr(cfg.train, key, getattr(args, flag))
    if args.gpu:
        cfg.train.gpu = True
    if "://" not in cfg.train.storage:
        cfg.train.storage = str(Path(cfg.train.storage).resolve())
    if cfg.data.window > cfg.model.window:
        cfg.model.window = cfg.data.window
    return Config.from_dict(cfg.to_dict())


def manifest_digest(path: str) -> tuple[str, dict]:
    """The manifest's sha256 (the data's identity in MLflow) and its split counts."""
    from shard_tools.files import sha256_file
    from shard_tools.reader import load_manifest

    m = load_manifest(path)
    counts = {f"data.{s}_{k}": v[k] for s, v in m["splits"].items() for k in ("sequences", "bases")}
    return sha256_file(Path(path) / "manifest.json"), counts


def start_ray() -> None:
    import ray

    env = {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONWARNINGS": "ignore",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else every progress line reaches the driver twice
    }
    if FAIL_AT_STEP_ENV in os.environ:
        env[FAIL_AT_STEP_ENV] = os.environ[FAIL_AT_STEP_ENV]
    if os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`: join the cluster
        # Ray refuses to merge a driver env var the job's runtime env already sets: add only the others.
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
        taken = (job.get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in taken}
        ray.init(runtime_env={"env_vars": env} if env else None, log_to_driver=True)
    else:
        # Without a dashboard Ray's state API is absent, and Ray Train's placement-group cleaner would log
        # a warning every few seconds saying so; the job's own Ray logs are therefore cut to errors.
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            runtime_env={"env_vars": env},
            logging_config=ray.LoggingConfig(log_level="ERROR"),
        )


def mlflow_run(cfg: Config, uri: str) -> str:
    """Start the run, or reopen the one this name+storage started before (resume)."""
    import mlflow

    from gene_ae.tracking import git_commit

    marker = Path(cfg.train.storage) / cfg.train.name / "mlflow_run_id" if "://" not in cfg.train.storage else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.train.experiment)
    if marker is not None and marker.is_file():
        run = mlflow.start_run(run_id=marker.read_text().strip(), log_system_metrics=True)
        print(f"[gene-ae] resuming MLflow run {run.info.run_id}", flush=True)
        return run.info.run_id
    run = mlflow.start_run(run_name=cfg.train.name, log_system_metrics=True)
    digest, counts = manifest_digest(cfg.data.path)
    mlflow.log_params(cfg.flat())
    mlflow.log_params(counts)
    mlflow.set_tags({"data.manifest_sha256": digest, "git_commit": git_commit(), "data.path": cfg.data.path})
    mlflow.log_dict(cfg.to_dict(), "config.json")
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(run.info.run_id)
    return run.info.run_id


def loss_curve(run_id: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, ax in (
        ("bits_per_base", axes[0]),
        ("val_bits_per_base", axes[0]),
        ("loss_nce", axes[1]),
        ("val_recall_at_1_d10", axes[1]),
        ("val_recall_at_1_d30", axes[1]),
    ):
        hist = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        if hist:
            ax.plot([m.step for m in hist], [m.value for m in hist], label=key)
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend()
    axes[0].set_title("reconstruction")
    axes[1].set_title("contrastive / retrieval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def checked_config(args: argparse.Namespace) -> Config:
    """The resolved config, after the checks that must fail before Ray starts."""
    from shard_tools.reader import load_manifest

    cfg = resolve_config(args)
    load_manifest(cfg.data.path)
    if cfg.train.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {cfg.train.workers}")
    if os.environ.get("RAY_ADDRESS") and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise ValueError(
            "on a cluster set MLFLOW_TRACKING_URI (a server every node reaches): the default "
            "./mlflow.db would live in the job's temporary working directory and be lost"
        )
    return cfg


def build_trainer(cfg: Config, uri: str, run_id: str):
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    t = cfg.train
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.to_dict(), "tracking_uri": uri, "run_id": run_id},
        torch_config=TorchConfig(backend="nccl" if t.gpu else "gloo", timeout_s=t.timeout_s),
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.workers, use_gpu=t.gpu, resources_per_worker=None if t.gpu else {"CPU": 1}
        ),
        run_config=ray.train.RunConfig(
            name=t.name,
            storage_path=t.storage,
            failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # not every report and checkpoint
        ),
    )


def register(cfg: Config, result, run_id: str, minutes: float) -> tuple[str, bool]:
    """Log the final checkpoint as the encoder, register it and maybe promote it; (model URI, promoted)."""
    import mlflow

    from gene_ae import tracking

    t = cfg.train
    final = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
    mlflow.log_metric("train_minutes", minutes)
    with result.checkpoint.as_directory() as ckpt, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(loss_curve(run_id, Path(tmp) / "loss_curve.png")))
        tags = {
            "data.manifest_sha256": manifest_digest(cfg.data.path)[0],
            "latent_dim": cfg.model.latent_dim,
            "window": cfg.model.window,
            "run_id": run_id,
        }
        tags.update({k: f"{v:.4f}" for k, v in final.items() if k.startswith("val_")})
        info = tracking.log_encoder(ckpt, register=t.register, tags=tags)
    version = getattr(info, "registered_model_version", None)
    promoted = bool(t.register and t.alias and version is not None) and tracking.promote_if_better(
        t.register, version, t.alias
    )
    return (f"models:/{t.register}/{version}" if t.register and version else info.model_uri), promoted


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        cfg = checked_config(parse_args(argv))
    except (ValueError, OSError) as exc:
        print(f"gene-ae train: error: {exc}", file=sys.stderr)
        return 1

    import mlflow
    import ray

    from gene_ae import tracking

    uri = tracking.tracking_uri()
    start_ray()
    run_id = mlflow_run(cfg, uri)
    started = time.perf_counter()
    try:
        result = build_trainer(cfg, uri, run_id).fit()
    except Exception as exc:  # Ray wraps worker errors; show the root cause in one line
        mlflow.end_run(status="FAILED")
        ray.shutdown()  # stop Ray's log forwarding so the error below is the last line
        print(f"gene-ae train: error: training failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - started) / 60
    if result.checkpoint is None:
        mlflow.end_run(status="FAILED")
        print("gene-ae train: error: training produced no checkpoint", file=sys.stderr)
        return 1
    where, promoted = register(cfg, result, run_id, minutes)
    mlflow.end_run()
    alias = cfg.train.alias
    print(
        f"[gene-ae] done in {minutes:.1f} min: {where}"
        + (f" ({'now' if promoted else 'not promoted to'} @{alias})" if alias else "")
        + f"; checkpoint {result.checkpoint.path}; MLflow run {run_id} at {uri}",
        flush=True,
    )
    return 0


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
