"""`gene-ae serve --index` checks the CPUs its replicas reserve before deploying (issue 34): with more than the Ray
cluster has free, Serve waited for ever and printed nothing; now it is one line saying what to change."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from gene_ae.config import Config
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.registry.serve_model import free_port


def test_serve_index_with_more_replicas_than_cpus_is_refused_in_one_line(tmp_path: Path, cli, run_cli) -> None:
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=32, window=256, downsample=4)
    ckpt = checkpoint.save(tmp_path / "ckpt", cfg, GeneAE(cfg.model))
    fasta = tmp_path / "two.fa"
    fasta.write_text(">a\nACGTTGCAAGGCTTAACCGGATTACAGATTACAGG\n>b\nTTGACCAGGATCCATGCAAGCTTGGCACTGGCCGTC\n")
    index = tmp_path / "idx"
    code, _, err = cli("gene-ae", "embed", "--model", ckpt, "--input", fasta, "--out", index, "--shard-records", "1")
    assert code == 0, err
    started = time.monotonic()
    code, out, err = run_cli("gene-ae", "serve", "--index", index, "--replicas", "50", "--port", free_port())
    ours = [line for line in err.splitlines() if line.startswith("gene-ae serve")]
    assert code == 1 and len(ours) == 1 and out == "", err[-3000:]
    assert ours[0].startswith(
        f"gene-ae serve: error: --index {index}: 2 shard deployments and the ingress, --replicas 50 each of "
        "--replica-cpus 1, need 150 CPUs; the Ray cluster has "
    ), ours[0]
    assert "lower --replicas" in ours[0] and time.monotonic() - started < 120
