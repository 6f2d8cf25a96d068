"""A damaged checkpoint is a one-line error naming the damaged file (issue 34), and `serve --help` promises only
the models `serve --model` serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gene_ae.config import Config
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig


@pytest.fixture
def ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=32, window=256, downsample=4)
    return checkpoint.save(tmp_path / "ckpt", cfg, GeneAE(cfg.model))


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "q.fa"
    path.write_text(">q\nACGTTGCAAGGCTTAACCGGATTACAGATTACA\n")
    return path


def _embed_error(cli, ckpt: Path, fasta: Path, tmp_path: Path) -> str:
    code, _, err = cli("gene-ae", "embed", "--model", ckpt, "--input", fasta, "--out", tmp_path / "idx")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err[-3000:]
    assert not (tmp_path / "idx").exists()
    return lines[0]


@pytest.mark.parametrize("keep", [0, 0.01, 0.5, 0.999])
def test_a_truncated_model_pt_is_one_line_naming_it(cli, ckpt, fasta, tmp_path, keep) -> None:
    weights = ckpt / checkpoint.MODEL_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    line = _embed_error(cli, ckpt, fasta, tmp_path)
    assert line.startswith(f"gene-ae embed: error: {weights}: damaged checkpoint file"), line


def test_a_model_pt_holding_something_else_is_one_line_naming_it(cli, ckpt, fasta, tmp_path) -> None:
    torch.save([1, 2, 3], ckpt / checkpoint.MODEL_FILE)
    line = _embed_error(cli, ckpt, fasta, tmp_path)
    assert line.startswith(f"gene-ae embed: error: {ckpt / checkpoint.MODEL_FILE}: damaged checkpoint file"), line


@pytest.mark.parametrize("text", ["", "{", '{"model": {"window": 2', "[1, 2]", "null", "\udcff"])
def test_a_config_that_is_not_a_json_object_is_one_line_naming_it(cli, ckpt, fasta, tmp_path, text) -> None:
    (ckpt / checkpoint.CONFIG_FILE).write_bytes(text.encode("utf-8", "surrogateescape"))
    line = _embed_error(cli, ckpt, fasta, tmp_path)
    assert line.startswith(f"gene-ae embed: error: {ckpt / checkpoint.CONFIG_FILE}: damaged checkpoint config"), line


def test_a_config_with_a_bad_model_value_names_the_file(cli, ckpt, fasta, tmp_path) -> None:
    path = ckpt / checkpoint.CONFIG_FILE
    sections = json.loads(path.read_text())
    sections["model"]["window"] = -1
    path.write_text(json.dumps(sections))
    line = _embed_error(cli, ckpt, fasta, tmp_path)
    assert line.startswith(f"gene-ae embed: error: {path}: model.window: must be"), line


def test_serve_help_promises_only_what_serve_model_serves(cli, ckpt) -> None:
    """`serve --model` runs `mlflow models serve`, which needs an MLflow model: its help must not offer a
    checkpoint directory (only --index takes one), and serving one says where it does serve."""
    code, out, _ = cli("gene-ae", "serve", "--help")
    assert code == 0
    model_help = " ".join(out.split("\n  --model MODEL", 1)[1].split("\n  --index INDEX", 1)[0].split())
    assert "checkpoint" not in model_help and "MLflow model directory" in model_help, model_help
    assert "refused with --index" in model_help, model_help  # the index's search reads no vectors
    code, _, err = cli("gene-ae", "serve", "--model", ckpt)
    assert code == 1 and "not an MLflow model directory" in err and "serves with --index" in err, err


def test_a_missing_checkpoint_folder_is_named(cli, fasta, tmp_path) -> None:
    """MLflow said "No such artifact: 'nomodel'" for a path that is not there."""
    line = _embed_error(cli, tmp_path / "nomodel", fasta, tmp_path)
    assert (
        line == f"gene-ae embed: error: {tmp_path / 'nomodel'}: no such checkpoint directory (nor a models:/ or "
        "runs:/ URI)"
    ), line


def test_a_training_runs_directory_gives_its_latest_checkpoint(tmp_path) -> None:
    """`--model runs/NAME` (Ray's checkpoint_<time> folders inside) loads the last one written, not the first."""
    from gene_ae.model.encoder import resolve_checkpoint

    run = tmp_path / "runs" / "demo"
    for stamp in ("2026-12-06_06-17-27.190160", "2026-12-06_06-18-14.069838"):
        (run / f"checkpoint_{stamp}").mkdir(parents=True)
        (run / f"checkpoint_{stamp}" / "model.pt").write_bytes(b"")
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    assert resolve_checkpoint(str(run)).name == "checkpoint_2026-12-06_06-18-14.069838"
