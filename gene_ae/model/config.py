"""The model's typed configuration, and the one check every config section ([model], [data], [train]) runs.

Each section is a dataclass: a field's annotation is its type, and the class's LIMITS table gives every numeric
field its allowed range. `check_fields` enforces both when a section is built, so a value from TOML, from
`--set` or from a library caller is refused in one line naming `section.key` and the range.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from shard_tools.alphabet import TOKENS

POOLINGS = ("mean", "attention", "max")


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field (its type is the field's annotation)."""

    low: float
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False  # high itself excluded

    def __contains__(self, value: float) -> bool:
        if value < self.low or (self.low_open and value == self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


_KINDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> its annotation resolved to a type (bool, int, float, str or tuple[int, ...])."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_fields(cfg: Any, section: str) -> None:
    """Refuse a field of the wrong type or out of its LIMITS range, as `section.key: must be ..., got ...`.

    bool is an int subclass and NaN compares false with everything, so both are tested for explicitly. An
    integer given for a float field becomes a float; a list given for a tuple field (JSON) becomes a tuple."""
    limits: dict[str, Range] = getattr(cfg, "LIMITS", {})
    for key, kind in field_types(type(cfg)).items():
        name, value, limit = f"{section}.{key}", getattr(cfg, key), limits.get(key)
        if typing.get_origin(kind) is tuple:
            items = value if isinstance(value, list | tuple) else None
            if items is None or not all(_is_int(v) for v in items):
                raise ValueError(f"{name}: must be a list of integers, got {show_value(value)}")
            value = tuple(int(v) for v in items)
            if limit is not None and any(v not in limit for v in value):
                raise ValueError(f"{name}: must be a list of integers each {limit}, got {show_value(value)}")
        else:
            value = _typed(name, value, kind, limit)
            if limit is not None and value not in limit:
                raise ValueError(f"{name}: must be {limit}, got {show_value(value)}")
        setattr(cfg, key, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _typed(name: str, value: Any, kind: type, limit: Range | None) -> Any:
    if kind is bool or kind is str:
        ok = isinstance(value, kind)
    elif kind is int:
        ok = _is_int(value)
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and _finite(value)
    else:
        raise TypeError(f"{name}: config fields are bool, int, float, str or tuple[int, ...], not {kind}")
    if not ok:
        raise ValueError(f"{name}: must be {_KINDS[kind]}{f' {limit}' if limit else ''}, got {show_value(value)}")
    return kind(value)


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def show_value(value: Any) -> str:
    """A value for a one-line message: repr escapes newlines; long ones are cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class ModelConfig:
    vocab_size: int = 8
    embed_dim: int = 64
    channels: int = 192  # conv width
    downsample: int = 8  # total stride of the encoder conv stack; power of 2; 1..64
    lstm_hidden: int = 192
    lstm_layers: int = 1
    bidirectional: bool = True
    vector_dim: int = 512  # size of the search vector
    latent_channels: int = 8  # latent values per coarse position: a window's latent is window/downsample x this
    window: int = 512  # longest window trained and decoded; must be divisible by downsample
    variational: bool = False  # the code is sampled (mu, logvar) in training, with a KL term
    pooling: str = "mean"  # "mean" | "attention" | "max"  (masked; the trunk branch only)
    vector_trunk: bool = False  # add the pooled conv + LSTM trunk to the search vector as one more branch
    dropout: float = 0.0
    kmer_sizes: tuple[int, ...] = (5, 7)  # k-mer bag branches added to the search vector; () for conv-LSTM only
    canonical_kmers: bool = True  # count a k-mer and its reverse complement as one (strand-invariant)
    kmer_buckets: int = 1 << 16  # k-mer vocabularies larger than this are hashed into this many rows
    freeze_kmers: bool = False  # ablation: keep the k-mer vectors at their random initialisation
    kmer_init_std: float = 1.0  # bags are normalised, so this only sets how fast Adam's steps move them

    LIMITS: ClassVar[dict[str, Range]] = {
        "vocab_size": Range(len(TOKENS)),  # every token of the shard alphabet has a row
        "embed_dim": Range(1),
        "channels": Range(8),  # and a multiple of 4
        "downsample": Range(1, 64),  # and a power of 2
        "lstm_hidden": Range(1),
        "lstm_layers": Range(1),
        "vector_dim": Range(1),
        "latent_channels": Range(1),
        "window": Range(1),  # and a multiple of downsample
        "dropout": Range(0, 1, high_open=True),
        "kmer_sizes": Range(1, 15),  # each
        "kmer_buckets": Range(1),
        "kmer_init_std": Range(0, low_open=True),
    }

    def __post_init__(self) -> None:
        check_fields(self, "model")
        ds = self.downsample
        if ds & (ds - 1):
            raise ValueError(f"model.downsample: must be a power of 2 in [1, 64], got {ds}")
        if self.window % ds:
            raise ValueError(f"model.window: must be a multiple of model.downsample ({ds}), got {self.window}")
        if self.channels % 4:
            raise ValueError(f"model.channels: must be a multiple of 4 and >= 8, got {self.channels}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling: must be one of {', '.join(POOLINGS)}, got {show_value(self.pooling)}")
        if not self.kmer_sizes and not self.vector_trunk:
            raise ValueError("model.kmer_sizes: must name a k-mer bag unless model.vector_trunk is true, got ()")

    @property
    def n_scales(self) -> int:
        """Number of stride-2 conv blocks (and of upsampling blocks in the decoder)."""
        return int(math.log2(self.downsample))

    @property
    def n_branches(self) -> int:
        """Paths summed into the search vector: one per k-mer bag, plus the trunk's."""
        return len(self.kmer_sizes) + int(self.vector_trunk)

    @property
    def latent_size(self) -> int:
        """Values in the latent of one full window."""
        return self.window // self.downsample * self.latent_channels

    def kmer_rows(self, k: int) -> int:
        """Rows of the k-mer bag for k (the last is the padding row)."""
        return min(4**k, self.kmer_buckets) + 1
