"""`python -m gene_ae.train`: Ray Train (TorchTrainer, DDP) on WebDataset shards, tracked in MLflow.

Locally it starts its own Ray on this machine's CPUs; under `ray job submit` (RAY_ADDRESS set) it
joins the cluster. The driver owns the MLflow run; rank 0 logs metrics into it; the driver logs and
registers the encoder from the final checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from gene_ae.config import Config, load_config
from gene_ae.core.local_ray import start_local_ray
from gene_ae.registry.tracking import HTTP_LIMITS, bound_requests, check_store, tracking_uri
from gene_ae.train.data import check_train_split, fit_features
from gene_ae.train.loop import FAIL_AT_STEP_ENV, train_loop_per_worker
from gene_ae.train.run import (
    check_not_finished,
    check_resumable,
    check_same_model,
    mark_finished,
    mlflow_run,
    register,
)
from shard_tools.files import check_out_dir, take_signals


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
    if cfg.data.window > cfg.model.window:  # the model decodes the longest window trained
        if cfg.data.window % cfg.model.downsample:
            raise ValueError(
                f"data.window: must be a multiple of model.downsample ({cfg.model.downsample}) when longer than "
                f"model.window ({cfg.model.window}), got {cfg.data.window}"
            )
        cfg.model.window = cfg.data.window
    return Config.from_dict(cfg.to_dict())


TRAIN_POLLING = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "1"}
# Ray Train's preemption watcher (an actor polling the cluster for nodes about to be taken back, to name them when a
# run fails) has no nodes to lose on a Ray started here, and its start printed an error-level line from Ray's core
# worker on every local run ("Actor with class name: 'PreemptionWatcher' ... has constructor arguments in the
# object store"): off on a local Ray unless the user says. On a cluster (RAY_ADDRESS) Ray's default stands.
LOCAL_ONLY = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def start_ray() -> None:
    import ray

    env = {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONWARNINGS": "ignore",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else every progress line reaches the driver twice
    }
    env.update({k: os.environ[k] for k in HTTP_LIMITS})  # the workers' requests to the tracking server time out too
    # Ray Train's controller polls its workers every 2 s and its preemption watcher every 5 s: a run's end was
    # seen up to 8 s late (a tiny run's last step to its model logged). Polled more often unless the user says.
    env.update({k: os.environ.get(k, v) for k, v in TRAIN_POLLING.items()})
    if FAIL_AT_STEP_ENV in os.environ:
        env[FAIL_AT_STEP_ENV] = os.environ[FAIL_AT_STEP_ENV]
    if os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`: join the cluster
        # Ray refuses to merge a driver env var the job's runtime env already sets: add only the others.
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
        taken = (job.get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in taken}
        ray.init(runtime_env={"env_vars": env} if env else None, log_to_driver=True)
    else:
        env.update({k: os.environ.get(k, v) for k, v in LOCAL_ONLY.items()})
        # Without a dashboard Ray's state API is absent, and Ray Train's placement-group cleaner would log
        # a warning every few seconds saying so; the job's own Ray logs are therefore cut to errors.
        start_local_ray(  # loopback only (gene_ae/core/local_ray.py)
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            runtime_env={"env_vars": env},
            logging_config=ray.LoggingConfig(log_level="ERROR"),
        )


def checked_config(args: argparse.Namespace) -> Config:
    """The resolved config, after the checks that must fail before Ray starts."""
    cfg = resolve_config(args)  # every value typed and in range (gene_ae/config.py)
    check_train_split(cfg.data)  # a train split that can give batches
    # The user's features, checked against the shards and fitted to them (categories, mean and std), so that
    # every rank and the saved config agree on each value's code.
    cfg.model.features = fit_features(cfg.data.path, cfg.model.features)
    check_not_finished(cfg)  # not a finished run rerun to the steps it already has
    check_same_model(cfg)  # a resumed run's checkpoints hold the model asked for
    if os.environ.get("RAY_ADDRESS") and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise ValueError(
            "on a cluster set MLFLOW_TRACKING_URI (a server every node reaches): the default "
            "./mlflow.db would live in the job's temporary working directory and be lost"
        )
    check_storage(cfg.train.storage)  # checkpoints can be written there
    if not os.environ.get("RAY_ADDRESS"):  # a cluster may scale up to what it lacks now: not checked there
        check_local_resources(cfg)
    # a tracking server answers, a sqlite store is one and writable (a new one is made)
    check_store("MLFLOW_TRACKING_URI", must_exist=False, writes=True)
    check_resumable(cfg, tracking_uri())  # a resumed run's MLflow run is in this store
    return cfg


def check_local_resources(cfg: Config) -> None:
    """Refuse more workers than the Ray started here can place (one CPU, or one GPU with --gpu, a worker): Ray
    Train would wait for them for ever, printing nothing."""
    t = cfg.train
    cpus = os.cpu_count() or 1  # what start_ray gives Ray
    if t.workers > cpus:
        raise ValueError(f"--workers {t.workers}: this machine has {cpus} CPUs, one a worker; give --workers {cpus} "
                         "or fewer (or run on a Ray cluster: RAY_ADDRESS)")  # fmt: skip
    if t.gpu:
        import torch

        gpus = torch.cuda.device_count()
        if t.workers > gpus:
            raise ValueError(f"--gpu: {t.workers} workers need {t.workers} GPUs, one a worker; this machine has "
                             f"{gpus} (leave --gpu out, or give --workers {gpus})" if gpus else
                             "--gpu: this machine has no CUDA GPU; leave --gpu out")  # fmt: skip


def check_storage(storage: str) -> None:
    """Refuse a local --storage that checkpoints could not be written to, before Ray starts (remote ones are
    Ray's to check)."""
    if "://" not in storage:
        check_out_dir(storage, "--storage")


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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    bound_requests()
    try:
        cfg = checked_config(parse_args(argv))
    except (ValueError, OSError) as exc:
        print(f"gene-ae train: error: {exc}", file=sys.stderr)
        return 1

    import mlflow
    import ray

    uri = tracking_uri()
    start_ray()
    # SIGTERM as Ctrl-C (raised here, where fit() waits): Ray's own handler, installed by ray.init, ended the driver
    # with a native crash dump; this one stops Ray in order and says how to resume (issue 34)
    signals: list[int] = []

    def terminated(signum, frame) -> None:
        signals.append(signum)
        raise KeyboardInterrupt  # Ray Train's fit() re-raises a plain KeyboardInterrupt: `signals` says which

    signal.signal(signal.SIGTERM, terminated)
    take_signals()  # even when the parent started this process with them blocked (shard_tools/files.py)
    run_id = mlflow_run(cfg, uri)
    started = time.perf_counter()
    try:
        result = build_trainer(cfg, uri, run_id).fit()
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        ray.shutdown()
        print(f"gene-ae train: {'terminated' if signals else 'interrupted'}; the checkpoints written so far are kept: "
              "rerun the same command (same --name and --storage) to resume", file=sys.stderr)  # fmt: skip
        return 143 if signals else 130
    except Exception as exc:  # Ray wraps worker errors; show the root cause in one line
        mlflow.end_run(status="FAILED")
        ray.shutdown()  # stop Ray's log forwarding so the error below is the last line
        print(f"gene-ae train: error: training failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    # Ray goes down here, in order, not at interpreter exit: what remains (registering, the summary line) needs
    # only the checkpoint on disk, and Train's helper actors (its placement-group cleaner) would otherwise be
    # killed mid-call at exit and their ActorDiedError tracebacks forwarded to this terminal after the summary.
    ray.shutdown()
    minutes = (time.perf_counter() - started) / 60
    if result.checkpoint is None:
        mlflow.end_run(status="FAILED")
        print("gene-ae train: error: training produced no checkpoint", file=sys.stderr)
        return 1
    where, promoted = register(cfg, result, run_id, minutes)
    mark_finished(cfg, cfg.train.steps)
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
