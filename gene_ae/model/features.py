"""The user's features in the model, by configuration ([model.features] in TOML, or --set).

Each declared feature is used one of two ways:
- `use = "vector"`: an input of the search vector. Numeric values are standardised (the training data's
  mean and standard deviation, recorded in the config) and go through a small MLP; categorical values
  through an embedding table whose row 0 is the unknown bucket (values not seen in training, and missing
  ones). The result, L2-normalised and scaled by `weight`, is added to the sequence branches, so the
  vector keeps its size and a feature can only move it by `weight`.
- `use = "signal"` (categorical only): a training signal that never enters the vector: windows of records
  that share the value are extra positives of a supervised-contrastive term (losses.supcon_loss), weighted
  by `weight`. Embedding then needs no feature.

A model with vector features refuses input that lacks them (`check_given`, the one message), in `gene-ae
embed`, the Encoder, the served pyfunc and the search endpoint alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

USES = ("vector", "signal")
KINDS = ("numeric", "categorical")


@dataclass
class ModelFeature:
    """One of the user's features as the model uses it ([model.features]): in the vector or as a training signal.
    Not the reader's declaration of a feature (shard_tools.declared.DeclaredFeature) nor the stored values of
    an index (gene_ae.core.features.FeatureColumns)."""

    name: str
    kind: str = "categorical"  # numeric | categorical
    use: str = "signal"  # vector: an input of the search vector; signal: a training signal only
    weight: float = 0.5  # vector: the feature part's norm beside each unit-norm sequence branch; signal: loss weight
    categories: tuple[str, ...] = ()  # categorical: the values seen in training (filled from the shards)
    mean: float = 0.0  # numeric: standardisation, filled from the shards
    std: float = 1.0

    def __post_init__(self) -> None:
        where = f"model.features.{self.name}"
        if self.kind not in KINDS or self.use not in USES:
            raise ValueError(f"{where}: kind must be one of {KINDS} and use one of {USES}, got {self.kind}/{self.use}")
        if self.kind == "numeric" and self.use == "signal":
            raise ValueError(f'{where}: a numeric feature can enter the vector (use = "vector"), not be a signal')
        if not (isinstance(self.weight, int | float) and 0 < self.weight <= 10 and math.isfinite(self.weight)):
            raise ValueError(f"{where}.weight: must be in (0, 10], got {self.weight!r}")
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"{where}: mean and std must be finite and std > 0, got {self.mean}, {self.std}")
        self.categories = tuple(str(c) for c in self.categories)


def parse_features(value: object) -> tuple[ModelFeature, ...]:
    """[model.features] from TOML ({name: {kind, use, weight, ...}}), a list of ModelFeature dicts (config.json),
    or --set text `name:kind:use:weight,...` (kind, use and weight optional)."""
    if isinstance(value, str):
        specs = []
        for item in filter(None, (v.strip() for v in value.split(","))):
            name, *rest = item.split(":")
            keys = ("kind", "use", "weight")
            if len(rest) > len(keys):
                raise ValueError(f"model.features.{name}: want NAME:KIND:USE:WEIGHT, got {item!r}")
            given = dict(zip(keys, rest))
            if "weight" in given:
                try:
                    given["weight"] = float(given["weight"])
                except ValueError:
                    raise ValueError(f"model.features.{name}.weight: not a number: {given['weight']!r}") from None
            specs.append({"name": name, **given})
        value = specs
    if isinstance(value, Mapping):
        value = [{"name": k, **(v if isinstance(v, Mapping) else {"kind": v})} for k, v in value.items()]
    if not isinstance(value, Sequence):
        raise ValueError(f"model.features: expected a table of features, got {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, ModelFeature):
            out.append(item)
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError(f"model.features: each feature needs a name, got {item!r}")
        unknown = set(item) - {f for f in ModelFeature.__dataclass_fields__}
        if unknown:
            raise ValueError(f"model.features.{item['name']}: unknown key {sorted(unknown)[0]!r}")
        out.append(ModelFeature(**{**item, "categories": tuple(item.get("categories", ()))}))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValueError(f"model.features: {names} names a feature twice")
    return tuple(out)


def describe(specs: Sequence[ModelFeature]) -> str:
    """The features as --set text (`name:kind:use:weight,...`): the MLflow param and registry tag, short
    whatever the number of categories (config.json keeps those)."""
    return ",".join(f"{f.name}:{f.kind}:{f.use}:{f.weight:g}" for f in specs)


def vector_features(specs: Sequence[ModelFeature]) -> list[ModelFeature]:
    return [f for f in specs if f.use == "vector"]


def codes(specs: Sequence[ModelFeature], values: Mapping[str, object] | None) -> np.ndarray:
    """One record's features as numbers, one per spec: a categorical value's index in its categories + 1
    (0: unknown or missing), a numeric value as is (NaN: missing). What the loader and the Encoder pass on."""
    values = values or {}
    out = np.zeros(len(specs), dtype=np.float32)
    for i, f in enumerate(specs):
        v = values.get(f.name)
        if f.kind == "categorical":
            out[i] = (f.categories.index(str(v)) + 1) if v is not None and str(v) in f.categories else 0
        elif v is None:
            out[i] = math.nan
        else:
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"feature {f.name!r} is numeric for this model, got {v!r}") from None
    return out


def codes_of_rows(specs: Sequence[ModelFeature], given: Mapping[str, Sequence], n: int) -> np.ndarray:
    """[n, len(specs)] codes of n records from columns `given` (name -> n values)."""
    return (
        np.stack([codes(specs, {k: v[i] for k, v in given.items()}) for i in range(n)])
        if n
        else (np.zeros((0, len(specs)), np.float32))
    )


def check_given(needed: Iterable, given: Mapping[str, str | None], where: str, remedy: str = "") -> None:
    """The one refusal of input that lacks a feature the model's vector takes, or declares it as the other kind:
    one line naming `where` and the feature, then `remedy` (formatted with name and kind). `needed`: anything
    with .name and .kind (ModelFeature, or the readers' declaration); `given`: name -> declared kind, or None
    where only presence is known."""
    for f in needed:
        fix = remedy.format(name=f.name, kind=f.kind)
        if f.name not in given:
            raise ValueError(f"{where}: this model's vector takes the feature {f.name!r} ({f.kind}){fix}")
        if given[f.name] not in (None, f.kind):
            raise ValueError(
                f"{where}: this model's vector takes the feature {f.name!r} as {f.kind}, declared {given[f.name]}{fix}"
            )


def require(specs: Sequence[ModelFeature], given: Mapping[str, Sequence], n: int, where: str = "input") -> None:
    """Refuse feature columns that lack a feature the vector takes, or hold a value too few or too many."""
    check_given(vector_features(specs), dict.fromkeys(given), where)
    for f in vector_features(specs):
        if len(given[f.name]) != n:
            raise ValueError(f"{where}: feature {f.name!r} has {len(given[f.name])} values for {n} sequences")


@dataclass
class FeatureStats:
    """What training learns of each feature from the shards: categories seen, numeric mean and std."""

    categories: dict[str, set[str]] = field(default_factory=dict)
    sums: dict[str, list[float]] = field(default_factory=dict)

    def add(self, specs: Sequence[ModelFeature], values: Mapping[str, object]) -> None:
        for f in specs:
            v = values.get(f.name)
            if v is None:
                continue
            if f.kind == "categorical":
                self.categories.setdefault(f.name, set()).add(str(v))
            elif math.isfinite(float(v)):
                s = self.sums.setdefault(f.name, [0.0, 0.0, 0.0])
                s[0], s[1], s[2] = s[0] + 1, s[1] + float(v), s[2] + float(v) ** 2

    def fitted(self, specs: Sequence[ModelFeature]) -> tuple[ModelFeature, ...]:
        out = []
        for f in specs:
            if f.kind == "categorical":
                out.append(ModelFeature(**{**f.__dict__, "categories": tuple(sorted(self.categories.get(f.name, ())))}))
                continue
            n, total, squares = self.sums.get(f.name, [0.0, 0.0, 0.0])
            mean = total / n if n else 0.0
            std = math.sqrt(max(squares / n - mean**2, 0.0)) if n else 1.0
            out.append(ModelFeature(**{**f.__dict__, "mean": mean, "std": std if std > 1e-12 else 1.0}))
        return tuple(out)
