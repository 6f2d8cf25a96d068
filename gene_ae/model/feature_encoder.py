"""The vector features of a batch through their own small networks (gene_ae/model/features.py says how)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gene_ae.model.features import ModelFeature, vector_features


class FeatureEncoder(nn.Module):
    """The vector features' codes [B, F] (features.codes, in the order of the model's feature specs) ->
    [B, D]: each feature's part L2-normalised and weighted, summed."""

    def __init__(self, specs: Sequence[ModelFeature], dim: int):
        super().__init__()
        self.columns = [i for i, f in enumerate(specs) if f.use == "vector"]
        self.specs = vector_features(specs)
        self.parts = nn.ModuleDict()
        for f in self.specs:
            if f.kind == "numeric":
                self.parts[f.name] = nn.Sequential(nn.Linear(1, 32), nn.GELU(), nn.Linear(32, dim))
            else:
                self.parts[f.name] = nn.Embedding(len(f.categories) + 1, dim)  # row 0: unknown or missing

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        parts = []
        for col, f in zip(self.columns, self.specs):
            x = codes[:, col].float()
            if f.kind == "numeric":
                z = torch.nan_to_num((x - f.mean) / f.std, nan=0.0)[:, None]  # missing: the mean
                part = self.parts[f.name](z)
            else:
                part = self.parts[f.name](x.long().clamp(0, len(f.categories)))
            parts.append(f.weight * nn.functional.normalize(part.float(), dim=-1))
        return torch.stack(parts).sum(0)
