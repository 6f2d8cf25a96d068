"""Encoder batching: windows of many sequences batched together equal embedding each one alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gene_ae.config import Config
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.model.encoder import Encoder, validate


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=64, window=256, downsample=4)
    return Encoder(GeneAE(cfg.model), cfg, device="cpu")


def test_batched_windows_equal_per_sequence_tiling(encoder):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 7, size=n).astype(np.uint8) for n in (50, 256, 300, 1000, 5000, 17)]
    batched = encoder.embed_tokens(seqs, batch_size=7)
    alone = np.concatenate([encoder.embed_tokens([s], batch_size=1) for s in seqs])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(encoder.embed_tokens(seqs[::-1], batch_size=3)[::-1], batched, atol=1e-5)


def test_validate_names_the_bad_row():
    with pytest.raises(ValueError, match=r"row 2: non-nucleotide character 'E'"):
        validate(["ACGT", "acgtn", "ACEGT"])
    with pytest.raises(ValueError, match="row 0: empty sequence"):
        validate(["  \n"])
    with pytest.raises(ValueError, match="row 1: expected a DNA string"):
        validate(["ACGT", 5])  # type: ignore[list-item]
