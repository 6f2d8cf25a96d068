"""Typed run configuration: model, data and training sections, from TOML and command-line overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gene_ae.model.config import ModelConfig

DEFAULT_MODEL_NAME = "gene-ae-encoder"  # the registered model's name unless --register says otherwise


@dataclass
class DataConfig:
    path: str = ""  # shard directory (manifest.json + train/ + val/)
    window: int = 512  # training window; sequences longer than this are sampled in random windows
    min_length: int = 64  # shorter records (and tails) are skipped
    batch_size: int = 64  # per rank; also the in-batch negatives of each rank's contrastive loss
    loader_workers: int = 1  # background processes per rank; 0 decodes in the training process
    shuffle_buffer: int = 1000  # windows held for shuffling
    bucket_batches: int = 8  # batches pooled and sorted by length before batching
    windows_per_record: float = 1.0  # mean windows drawn per 1 window-length of sequence, per pass
    view_divergence: float = 0.35  # the contrastive view is mutated at up to this divergence
    rc_prob: float = 0.5  # and reverse-complemented with this probability
    sibling_ratio: float = 0.2  # hard negative: the window mutated at 0.5-1.5 x this x the view's divergence (0 = none)
    skip_corrupt: bool = False  # count and skip undecodable samples instead of failing
    val_records: int = 256  # validation records, embedded whole (tiled like the Encoder) for recall
    val_max_length: int = 8192  # longer validation records are cut to this many bases


@dataclass
class TrainConfig:
    name: str = "gene-ae"  # Ray run name; rerunning with the same name and storage resumes
    storage: str = "runs"  # Ray storage path (local dir, s3://, gs://); checkpoints live here
    workers: int = 2  # Ray Train workers (DDP ranks)
    gpu: bool = False
    threads_per_worker: int = 0  # torch threads per worker; 0 = CPUs of the node / workers
    steps: int = 540  # optimizer steps in total (fits the 15-minute budget on 2 CPU cores: docs/RESULTS.md)
    steps_per_epoch: int = 135  # validation and a checkpoint after each epoch
    checkpoint_every: int = 135
    log_every: int = 20
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 60
    grad_clip: float = 1.0
    contrastive_weight: float = 1.0  # InfoNCE between a window and its mutated view; 0 = reconstruction only
    temperature: float = 0.05  # chosen on the val split over 0.1 (docs/RESULTS.md, "Choices")
    queue_size: int = 0  # earlier batches' vectors kept as extra InfoNCE negatives (0 = in-batch only)
    kl_weight: float = 1e-3  # variational models only; annealed linearly over kl_anneal_steps
    kl_anneal_steps: int = 500
    free_bits: float = 0.0
    seed: int = 0
    max_failures: int = 2  # worker deaths survived by restoring the newest checkpoint
    timeout_s: int = 300  # process-group timeout: fail instead of hanging
    experiment: str = "gene-ae"  # MLflow experiment
    register: str = DEFAULT_MODEL_NAME  # MLflow registered model name ("" to skip)
    alias: str = ""  # set this alias on the new version (e.g. production)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, Any]]) -> Config:
        cfg = cls()
        for section, values in d.items():
            _apply(cfg, section, values)
        cfg.model = ModelConfig(**asdict(cfg.model))  # re-run validation
        return cfg

    def flat(self) -> dict[str, Any]:
        """section.key -> value, as logged to MLflow params."""
        return {f"{s}.{k}": v for s, vals in self.to_dict().items() for k, v in vals.items()}


# Keys renamed since checkpoints were first written: old config.json files (and old TOML) still load.
RENAMED = {("model", "latent_dim"): "vector_dim", ("model", "code_dim"): "latent_channels"}


def _apply(cfg: Config, section: str, values: dict[str, Any]) -> None:
    if section not in ("model", "data", "train"):
        raise ValueError(f"unknown config section [{section}] (expected model, data, train)")
    target = getattr(cfg, section)
    names = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        key = RENAMED.get((section, key), key)
        if key not in names:
            raise ValueError(f"unknown config key {section}.{key} (known: {', '.join(sorted(names))})")
        setattr(target, key, _coerce(value, getattr(target, key), f"{section}.{key}"))


def _coerce(value: Any, current: Any, name: str) -> Any:
    if not isinstance(value, str) or isinstance(current, str):
        return value
    if isinstance(current, tuple | list):
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise ValueError(f"{name}: cannot read {value!r} as {type(current).__name__}") from None
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then a TOML file ([model], [data], [train] tables), then `section.key=value` overrides."""
    cfg = Config()
    if path:
        with open(path, "rb") as f:
            try:
                doc = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: {exc}") from None
        for section, values in doc.items():
            _apply(cfg, section, values)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {item!r}: expected section.key=value, e.g. model.vector_dim=128")
        _apply(cfg, section, {name: value.strip()})
    return Config.from_dict(cfg.to_dict())
