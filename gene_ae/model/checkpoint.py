"""Checkpoint layout, shared by training (save/resume) and the encoder (load for inference).

A checkpoint directory holds `config.json` (the resolved Config) and `model.pt` (model weights);
training checkpoints add `trainer.pt` (optimiser, scheduler, step, RNG states, MLflow run id).
Weights are loaded with `weights_only=True`: no pickled classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from gene_ae.config import Config
from gene_ae.model.autoencoder import GeneAE

CONFIG_FILE, MODEL_FILE, TRAINER_FILE = "config.json", "model.pt", "trainer.pt"


def save(directory: str | Path, cfg: Config, model: torch.nn.Module, trainer_state: dict | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=1))
    module = getattr(model, "module", model)  # unwrap DDP
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, d / MODEL_FILE)
    if trainer_state is not None:
        torch.save(trainer_state, d / TRAINER_FILE)
    return d


def load_config(directory: str | Path) -> Config:
    return Config.from_dict(json.loads((Path(directory) / CONFIG_FILE).read_text()))


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[GeneAE, Config]:
    d = Path(directory)
    if not (d / MODEL_FILE).is_file() or not (d / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a gene-ae checkpoint (needs {CONFIG_FILE} and {MODEL_FILE})")
    cfg = load_config(d)
    model = GeneAE(cfg.model)
    state = torch.load(d / MODEL_FILE, map_location="cpu", weights_only=True)
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
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
