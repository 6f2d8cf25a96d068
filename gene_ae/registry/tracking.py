"""MLflow: where runs go, the one function that logs and registers the encoder, aliases."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gene_ae.core.stores import HTTP_LIMITS, PROBE_TIMEOUT_S, bound_requests, check_store  # noqa: F401 (their home)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # gene_ae/
REPO_ROOT = PACKAGE_ROOT.parent


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else a sqlite store in the working directory (absolute, for Ray workers)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def client(what: str):
    """An MlflowClient for a lookup, once check_store has passed."""
    import mlflow

    check_store(what)
    return mlflow.MlflowClient()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pip_requirements() -> list[str]:
    """What the served model needs, pinned to this environment's versions."""
    from importlib.metadata import version

    names = ["torch", "numpy", "pandas", "mlflow", "zstandard"]  # no webdataset or ray: tests/test_layers.py
    return [f"{n}=={version(n).split('+')[0]}" for n in names]


def log_encoder(checkpoint_dir: str | Path, register: str = "", tags: dict[str, str] | None = None):
    """Log the encoder as a pyfunc in the active run; register it when `register` names a model.

    Models-from-code: the model is `gene_ae/registry/pyfunc_model.py` plus the package source, and the
    weights travel as the `checkpoint` artifact, so nothing is pickled.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from gene_ae.model.checkpoint import CONFIG_FILE, MODEL_FILE, load_model_config

    model_cfg = load_model_config(checkpoint_dir)
    dim = model_cfg.vector_dim
    # A column per feature the vector takes (missing values allowed): without it in the signature, MLflow's
    # schema enforcement would drop the column before the pyfunc could read it.
    columns = [ColSpec("string", "sequence")] + [
        ColSpec("double" if f.kind == "numeric" else "string", f.name, required=False)
        for f in model_cfg.features
        if f.use == "vector"
    ]
    signature = ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim))]),
    )
    # One row as a client sends it: MLflow stores it beside the model (and checks the model answers it), so a
    # user sees what to send; every feature column empty (a missing value is allowed).
    example = {"sequence": ["ACGTTGCAAGGCTTACCGATGCATGCAAGTCCGATTGACC"]}
    example.update({c.name: [None] for c in columns[1:]})
    slim = Path(tempfile.mkdtemp()) / "checkpoint"  # weights + config only: no optimiser state in the model
    slim.mkdir()
    for name in (CONFIG_FILE, MODEL_FILE):
        shutil.copy(Path(checkpoint_dir) / name, slim / name)
    info = mlflow.pyfunc.log_model(
        name="encoder",
        python_model=str(PACKAGE_ROOT / "registry" / "pyfunc_model.py"),
        artifacts={"checkpoint": str(slim)},
        code_paths=[str(PACKAGE_ROOT), str(REPO_ROOT / "shard_tools")],
        signature=signature,
        input_example=pd.DataFrame(example),
        pip_requirements=pip_requirements(),
        registered_model_name=register or None,
    )
    shutil.rmtree(slim.parent, ignore_errors=True)
    version = getattr(info, "registered_model_version", None)
    if register and version is not None and tags:
        client = mlflow.MlflowClient()
        for k, v in tags.items():
            client.set_model_version_tag(register, str(version), k, str(v))
    return info


def set_alias(name: str, version: str | int, alias: str) -> None:
    client(f"models:/{name}/{version}").set_registered_model_alias(name, alias, str(version))


def resolve_version(uri: str) -> str:
    """The registry version behind models:/NAME@ALIAS or models:/NAME/V ('' for runs:/ and local paths)."""
    if not uri.startswith("models:/"):
        return ""
    name, _, ref = uri[len("models:/") :].partition("@")
    if ref:
        return str(client(uri).get_model_version_by_alias(name, ref).version)
    return name.rsplit("/", 1)[-1]


def pinned_uri(uri: str, version: str) -> str:
    """models:/NAME@ALIAS as models:/NAME/VERSION (what the alias points at now); other URIs unchanged."""
    if uri.startswith("models:/") and "@" in uri and version:
        return f"models:/{uri[len('models:/') :].partition('@')[0]}/{version}"
    return uri


def promote_if_better(name: str, version: str | int, alias: str, metric: str = "val_recall_at_1") -> bool:
    """Champion/challenger: move `alias` to `version` only if its validation metric beats the holder's.

    The decision and both scores are recorded as tags on the challenger.
    """
    from mlflow.exceptions import MlflowException

    registry = client(f"models:/{name}/{version}")
    challenger = registry.get_model_version(name, str(version))
    score = float(challenger.tags.get(metric, "nan"))
    try:
        champion = registry.get_model_version_by_alias(name, alias)
        best = float(champion.tags.get(metric, "nan"))
    except MlflowException:
        champion, best = None, float("-inf")
    won = champion is None or (score == score and (best != best or score > best))
    registry.set_model_version_tag(name, str(version), f"challenger.{alias}.{metric}", f"{score:.4f}")
    registry.set_model_version_tag(name, str(version), f"challenger.{alias}.champion_score", f"{best:.4f}")
    registry.set_model_version_tag(name, str(version), f"challenger.{alias}.promoted", str(won).lower())
    if won:
        registry.set_registered_model_alias(name, alias, str(version))
    return won
