"""Checkpoint layout, shared by training (save/resume) and the encoder (load for inference).

A checkpoint directory holds `config.json` (the resolved run config, every section) and `model.pt` (model
weights); training checkpoints add `trainer.pt` (optimiser, scheduler, step, RNG states, MLflow run id).
Weights are loaded with `weights_only=True`: no pickled classes. The model side reads only the [model]
section (`load_model_config`): loading a model for search never checks training settings; the run config
as a whole is the training side's (gene_ae/config.py `Config.from_checkpoint`).
"""

from __future__ import annotations

import errno
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import CONFIG_FILE, ModelConfig, load_sections

MODEL_FILE, TRAINER_FILE = "model.pt", "trainer.pt"
__all__ = ["CONFIG_FILE", "MODEL_FILE", "TRAINER_FILE", "load_model", "load_model_config", "load_sections", "save"]


def save(directory: str | Path, config, model: torch.nn.Module, trainer_state: dict | None = None) -> Path:
    """`config`: the run config (an object with `to_dict()`, or its sections as a dict); its [model] section is
    what loading needs."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sections = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    (d / CONFIG_FILE).write_text(json.dumps(sections, indent=1))
    module = getattr(model, "module", model)  # unwrap DDP
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, d / MODEL_FILE)
    if trainer_state is not None:
        torch.save(trainer_state, d / TRAINER_FILE)
    return d


def load_model_config(directory: str | Path) -> ModelConfig:
    """The checkpoint's [model] section, checked (the other sections are not read); errors name the file."""
    try:
        return ModelConfig.from_dict(load_sections(directory).get("model", {}))
    except ValueError as exc:
        where = str(Path(directory) / CONFIG_FILE)
        raise ValueError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def _load(path: Path, weights_only: bool = True) -> Any:
    """torch.load of a checkpoint file, a damaged one (cut short, not torch's format) a one-line error naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # torch's reader says EINVAL for a file cut short
            raise OSError(exc.errno, f"{path}: {exc.strerror or exc}") from None
        raise ValueError(f"{path}: damaged checkpoint file, cut short or not torch's format ({exc})") from None
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise ValueError(f"{path}: damaged checkpoint file, cut short or not torch's format ({first[:120]})") from None


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[GeneAE, ModelConfig]:
    d = Path(directory)
    if not (d / MODEL_FILE).is_file() or not (d / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a gene-ae checkpoint (needs {CONFIG_FILE} and {MODEL_FILE})")
    cfg = load_model_config(d)
    model = GeneAE(cfg)
    state = _load(d / MODEL_FILE)
    if not isinstance(state, dict):
        raise ValueError(f"{d / MODEL_FILE}: damaged checkpoint file, holds a {type(state).__name__}, not weights")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        theirs, ours = set(state), set(model.state_dict())
        diff = sorted(theirs ^ ours)[:3]
        raise ValueError(
            f"{d}: its weights do not fit this version's model (differing: {', '.join(diff) or 'shapes'}); "
            "a checkpoint from another gene-ae version: retrain, or load it with the version that wrote it"
        ) from None
    return model.to(device).eval(), cfg


def load_trainer_state(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / TRAINER_FILE
    return _load(path, weights_only=False) if path.is_file() else None
