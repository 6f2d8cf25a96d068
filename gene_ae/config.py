"""Typed run configuration: model, data and training sections, from TOML and command-line overrides.

Each section declares its fields' types (annotations) and numeric ranges (LIMITS); building a section checks
both (gene_ae/model/config.py, check_fields), so load_config and Config.from_dict refuse a bad value in one
line naming `section.key` after TOML and `--set` are merged, before anything starts.
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gene_ae.core.settings import check_fields, field_types, show_value
from gene_ae.model.config import RENAMED as MODEL_RENAMED
from gene_ae.model.config import ModelConfig, load_sections
from gene_ae.model.features import describe
from shard_tools.options import Range

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
    # With a signal feature (model.features, use = "signal"): batches made of groups of this many windows that
    # share its value, so the supervised-contrastive term has positives in every batch; 1: random batches.
    group_size: int = 4
    windows_per_record: float = 1.0  # mean windows drawn per 1 window-length of sequence, per pass
    view_divergence: float = 0.35  # the contrastive view is mutated at up to this divergence
    rc_prob: float = 0.5  # and reverse-complemented with this probability
    sibling_ratio: float = 0.2  # hard negative: the window mutated at 0.5-1.5 x this x the view's divergence (0 = none)
    skip_corrupt: bool = False  # count and skip undecodable samples instead of failing
    val_records: int = 256  # validation records, embedded whole (tiled like the Encoder) for recall
    val_max_length: int = 8192  # longer validation records are cut to this many bases

    LIMITS: ClassVar[dict[str, Range]] = {
        "window": Range(1),
        "min_length": Range(1),
        "batch_size": Range(1),
        "loader_workers": Range(0),
        "shuffle_buffer": Range(1),
        "bucket_batches": Range(1),
        "group_size": Range(1),
        "windows_per_record": Range(0, low_open=True),
        "view_divergence": Range(0, 1),  # mutation events per base
        "rc_prob": Range(0, 1),
        "sibling_ratio": Range(0, 1),  # a sibling nearer than the view, on average
        "val_records": Range(1),
        "val_max_length": Range(1),
    }

    def __post_init__(self) -> None:
        check_fields(self, "data")


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
    queue_size: int = 0  # earlier batches' windows and views (N of each) as extra InfoNCE negatives (0: in-batch)
    kl_weight: float = 1e-3  # variational models only; annealed linearly over kl_anneal_steps
    kl_anneal_steps: int = 500
    free_bits: float = 0.0
    seed: int = 0
    max_failures: int = 2  # worker deaths survived by restoring the newest checkpoint
    timeout_s: int = 300  # process-group timeout: fail instead of hanging
    experiment: str = "gene-ae"  # MLflow experiment
    register: str = DEFAULT_MODEL_NAME  # MLflow registered model name ("" to skip)
    alias: str = ""  # set this alias on the new version (e.g. production)

    LIMITS: ClassVar[dict[str, Range]] = {
        "workers": Range(1),
        "threads_per_worker": Range(0),
        "steps": Range(1),
        "steps_per_epoch": Range(1),
        "checkpoint_every": Range(1),
        "log_every": Range(1),
        "lr": Range(0, low_open=True),
        "weight_decay": Range(0),
        "warmup_steps": Range(0),
        "grad_clip": Range(0, low_open=True),
        "contrastive_weight": Range(0),
        "temperature": Range(0, low_open=True),
        "queue_size": Range(0),
        "kl_weight": Range(0),
        "kl_anneal_steps": Range(0),
        "free_bits": Range(0),
        "seed": Range(0, 2**63 - 1),  # torch, numpy and Python RNGs all take it
        "max_failures": Range(0),  # Ray's -1 (retry for ever) is refused: training must end
        "timeout_s": Range(1),
    }

    def __post_init__(self) -> None:
        check_fields(self, "train")
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise ValueError(f"train.name: must be a folder name (not empty, no '/'), got {show_value(self.name)}")
        check_registry_names(self.register, self.alias)


MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")  # what models:/NAME@ALIAS URIs can carry (MLflow refuses / and :)
ALIAS = re.compile(r"[A-Za-z_][\w-]*")  # MLflow's alias characters; not a version (v1) nor 'latest'


def check_registry_names(register: str, alias: str) -> None:
    """Refuse before any training step the names MLflow would refuse only at registration, after the work."""
    if register and not MODEL_NAME.fullmatch(register):
        raise ValueError(
            f"train.register: must be a model name of letters, digits, '.', '_' and '-' (no spaces or '/'), "
            f"got {show_value(register)}"
        )
    if alias and (not ALIAS.fullmatch(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias)):
        raise ValueError(
            f"train.alias: must be an alias of letters, digits, '_' and '-' (not 'latest' or v1, v2, ...), "
            f"got {show_value(alias)}"
        )
    if alias and not register:
        raise ValueError(f"train.alias: needs a registered model (train.register), got alias {show_value(alias)}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, Any]]) -> Config:
        """Build and check every section from plain values (TOML tables, a checkpoint's config.json)."""
        raw: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for section, values in d.items():
            _apply(raw, section, values)
        return cls(**{name: kind(**raw[name]) for name, kind in SECTIONS.items()})

    @classmethod
    def from_checkpoint(cls, directory: str | Path) -> Config:
        """The whole run config a checkpoint was trained with (its config.json, every section checked)."""
        return cls.from_dict(load_sections(directory))

    def flat(self) -> dict[str, Any]:
        """section.key -> value, as logged to MLflow params (the features as their short --set text)."""
        out = {f"{s}.{k}": v for s, vals in self.to_dict().items() for k, v in vals.items()}
        out["model.features"] = describe(self.model.features)
        return out


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
# Keys renamed since checkpoints were first written: old config.json files (and old TOML) still load.
RENAMED = {("model", old): new for old, new in MODEL_RENAMED.items()}


def _apply(raw: dict[str, dict[str, Any]], section: str, values: Any, text: bool = False) -> None:
    """Merge one section's values into `raw` by their current key names; `text` values (--set) are parsed."""
    if section not in SECTIONS:
        raise ValueError(f"unknown config section [{section:.40}] (expected model, data, train)")
    if not isinstance(values, dict):
        raise ValueError(f"config section [{section}] must be a table of keys, got {values!r:.60}")
    types = field_types(SECTIONS[section])
    for key, value in values.items():
        key = RENAMED.get((section, key), key)
        if key not in types:
            raise ValueError(f"unknown config key {section}.{key:.60} (known: {', '.join(sorted(types))})")
        raw[section][key] = _parse(value, types[key]) if text else value


def _parse(text: str, kind: Any) -> Any:
    """A --set value (text) as the field's type, or the text itself when it is not one: check_fields then
    refuses it as it refuses a TOML string where a number belongs, naming the key, its type and range."""
    text = text.strip()
    try:
        if typing.get_origin(kind) is tuple:
            return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
        if kind is bool:
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
        if kind is int or kind is float:
            return kind(text)
    except (ValueError, KeyError):
        pass
    return text


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then a TOML file ([model], [data], [train] tables), then `section.key=value` overrides;
    checked once, after all are merged, so an override can mend a file's value."""
    raw: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    if path:
        with open(path, "rb") as f:
            try:
                doc = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: {exc}") from None
            except UnicodeDecodeError as exc:  # UTF-16, Latin-1, a binary file: TOML is UTF-8
                raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); TOML is UTF-8") from None
        for section, values in doc.items():
            _apply(raw, section, values)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {item!r:.80}: expected section.key=value, e.g. model.vector_dim=128")
        _apply(raw, section, {name: value}, text=True)
    return Config.from_dict(raw)
