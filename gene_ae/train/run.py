"""The driver's MLflow run: started (or reopened on resume) with the config and the data's identity, a loss
curve at the end, and the encoder logged, registered and maybe promoted."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gene_ae.config import Config


def manifest_digest(path: str) -> tuple[str, dict]:
    """The manifest's sha256 (the data's identity in MLflow) and its split counts."""
    from shard_tools.files import sha256_file
    from shard_tools.reader import load_manifest

    m = load_manifest(path)
    counts = {f"data.{s}_{k}": v[k] for s, v in m["splits"].items() for k in ("sequences", "bases")}
    return sha256_file(Path(path) / "manifest.json"), counts


FINISHED_MARKER = "finished_step"  # beside mlflow_run_id: the step a run trained to, written once it is registered


def run_dir(cfg: Config) -> Path | None:
    """Ray's folder for this name and storage, where the markers below live; None for remote storage."""
    return Path(cfg.train.storage) / cfg.train.name if "://" not in cfg.train.storage else None


def finished_step(cfg: Config) -> int | None:
    """The step this name+storage's run finished at, or None (never finished, or remote storage)."""
    where = run_dir(cfg)
    try:
        text = (where / FINISHED_MARKER).read_text().strip() if where is not None else ""
    except OSError:
        return None
    return int(text) if text.isdecimal() else None


def mark_finished(cfg: Config, step: int) -> None:
    where = run_dir(cfg)
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        (where / FINISHED_MARKER).write_text(f"{step}\n")


def check_not_finished(cfg: Config) -> None:
    """Refuse to rerun a finished run to the same or fewer steps (Ray would restore its last checkpoint and
    have nothing to train); a larger train.steps continues it from that checkpoint."""
    step = finished_step(cfg)
    if step is not None and cfg.train.steps <= step:
        raise ValueError(
            f"train.steps: must be > {step} to continue run {cfg.train.name!r} in {cfg.train.storage}, which "
            f"finished at step {step}, got {cfg.train.steps} (or use another --name)"
        )


def check_same_model(cfg: Config) -> None:
    """Refuse, before Ray starts, to resume a run (same name and storage) with model settings its checkpoints were
    not trained with: Ray restored the newest checkpoint into a model of another shape and failed after it had
    started. The fitted features are left out (their statistics follow the data)."""
    from dataclasses import fields

    from gene_ae.model import checkpoint

    where = run_dir(cfg)
    saved = sorted(where.glob("checkpoint_*"), reverse=True) if where is not None and where.is_dir() else []
    newest = next((c for c in saved if (c / checkpoint.MODEL_FILE).is_file()), None)
    if newest is None:
        return
    try:
        held = checkpoint.load_model_config(newest)
    except (OSError, ValueError):  # a damaged checkpoint is named where it is loaded
        return
    for f in fields(held):
        was, now = getattr(held, f.name), getattr(cfg.model, f.name)
        if f.name != "features" and was != now:
            raise ValueError(
                f"model.{f.name}: run {cfg.train.name!r} in {cfg.train.storage} was trained with {f.name}={was!r} "
                f"(its checkpoint {newest.name}), this run asks {now!r}: its weights cannot be resumed; give the "
                "same model settings, or another --name"
            )


def check_resumable(cfg: Config, uri: str) -> None:
    """Refuse, before Ray starts, to resume a run (same name and storage) whose MLflow run the tracking store at
    `uri` does not hold (it was tracked in another store): MLflow would fail with a traceback after Ray started."""
    where = run_dir(cfg)
    marker = where / "mlflow_run_id" if where is not None else None
    if marker is None or not marker.is_file():
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = marker.read_text().strip()
    held = not (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file())  # never created here
    try:
        held = held and mlflow.MlflowClient(tracking_uri=uri).get_run(run_id) is not None
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise ValueError(f"{uri}: {str(exc).strip().splitlines()[0]}") from None
        held = False
    if not held:
        raise ValueError(
            f"--name {cfg.train.name}: its run in {where} was tracked as MLflow run {run_id}, which the store at "
            f"{uri} does not hold: set MLFLOW_TRACKING_URI to the store it was tracked in, or use another --name"
        )


def mlflow_run(cfg: Config, uri: str) -> str:
    """Start the run, or reopen the one this name+storage started before (resume)."""
    import mlflow

    from gene_ae.registry.tracking import git_commit

    where = run_dir(cfg)
    marker = where / "mlflow_run_id" if where is not None else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.train.experiment)
    digest, counts = manifest_digest(cfg.data.path)  # now: the data may be gone by the time the encoder is logged
    if marker is not None and marker.is_file():
        run = mlflow.start_run(run_id=marker.read_text().strip(), log_system_metrics=True)
        mlflow.set_tag("data.manifest_sha256", digest)  # the data this session trains on
        print(f"[gene-ae] resuming MLflow run {run.info.run_id}", flush=True)
        return run.info.run_id
    run = mlflow.start_run(run_name=cfg.train.name, log_system_metrics=True)
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
        if ax.get_lines():  # a run too short for any metric has none to name
            ax.legend()
    axes[0].set_title("reconstruction")
    axes[1].set_title("contrastive / retrieval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def register(cfg: Config, result, run_id: str, minutes: float) -> tuple[str, bool]:
    """Log the final checkpoint as the encoder, register it and maybe promote it; (model URI, promoted)."""
    import mlflow

    from gene_ae.model.features import describe, vector_features
    from gene_ae.registry import tracking

    t = cfg.train
    final = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
    # the data's identity as mlflow_run read it when training began: the shards may have been moved or deleted
    # since (reading them again here failed with a traceback after every step had trained)
    data_digest = mlflow.get_run(run_id).data.tags.get("data.manifest_sha256") or manifest_digest(cfg.data.path)[0]
    mlflow.log_metric("train_minutes", minutes)
    with result.checkpoint.as_directory() as ckpt, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(loss_curve(run_id, Path(tmp) / "loss_curve.png")))
        tags = {
            "data.manifest_sha256": data_digest,
            "vector_dim": cfg.model.vector_dim,
            "window": cfg.model.window,
            "run_id": run_id,
            "features": describe(cfg.model.features),  # what the model was trained with
            "required_features": ",".join(f.name for f in vector_features(cfg.model.features)),  # what embed needs
        }
        tags.update({k: f"{v:.4f}" for k, v in final.items() if k.startswith("val_")})
        info = tracking.log_encoder(ckpt, register=t.register, tags=tags)
    version = getattr(info, "registered_model_version", None)
    promoted = bool(t.register and t.alias and version is not None) and tracking.promote_if_better(
        t.register, version, t.alias
    )
    return (f"models:/{t.register}/{version}" if t.register and version else info.model_uri), promoted
