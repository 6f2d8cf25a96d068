"""Training: the loader and its hard negatives, and Ray Train end to end, resuming and failing fast. (That the
latent carries the sequence, the overfit test, is in test_model.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import webdataset as wds

from gene_ae.model.losses import contrastive_loss
from gene_ae.train.data import DataConfig, decode_samples, shard_urls, train_loader
from gene_ae.train.driver import FAIL_AT_STEP_ENV
from shard_tools import iter_blocks, read_shards
from shard_tools.cli import shard_fasta_main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.toml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory, data_dir) -> Path:
    """Real chimp genes in 3 small train shards: fewer shards than 2 ranks x 2 loader workers, and odd."""
    out = tmp_path_factory.mktemp("train") / "shards"
    rc = shard_fasta_main(
        [
            "--quiet",
            "--label-column",
            "class",
            "--block-bases",
            "450000",
            "--shard-size",
            "0.01",
            str(data_dir / "genefam" / "chimp_sample.tsv.gz"),
            str(out),
        ]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["splits"]["train"]["shards"]) == 3
    return out


def test_loader_agrees_with_reference_reader(shards):
    """The training pipeline's decoding yields exactly the parts read_shards is built from."""
    urls = shard_urls(shards, "train")
    pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
    ours = [t for t, codes in decode_samples(pipeline, skip_corrupt=False) if codes.shape == (0,)]
    ref = [r.tokens for r in iter_blocks(shards, "train")]
    assert len(ours) == len(ref) > 100
    assert all(np.array_equal(a, b) for a, b in zip(ours, ref))
    assert sum(t.size for t in ours) == sum(t.size for _, t, _ in read_shards(shards, "train"))


@pytest.mark.parametrize("loader_workers", [0, 2])
def test_every_rank_yields_the_same_batch_count(shards, loader_workers):
    """3 shards, 2 ranks x 2 loader workers: resampling + with_epoch gives each rank exactly N batches."""
    cfg = DataConfig(
        path=str(shards), window=256, batch_size=4, loader_workers=loader_workers, shuffle_buffer=20, bucket_batches=2
    )
    counts = [sum(1 for _ in train_loader(cfg, rank, batches=7, seed=1)) for rank in (0, 1)]
    assert counts == [7, 7]
    batch = next(iter(train_loader(cfg, 0, batches=1, seed=1)))
    tokens, lengths = np.asarray(batch["tokens"]), np.asarray(batch["lengths"])
    assert tokens.shape[0] == 4 and tokens.shape[1] <= 256 and (lengths >= cfg.min_length).all()
    assert (tokens[np.arange(4), lengths - 1] >= 3).all()  # real bases up to each length


def test_siblings_are_nearer_than_the_batch_and_the_loss_ranks_the_window_above_them(shards):
    """The hard negative must be hard: each window's sibling is far nearer to it (edit distance) than any
    other window in the batch, and farther than nothing the view is compared with by construction. The
    loss must prefer vectors that rank the window above its sibling for the view."""
    import edlib

    cfg = DataConfig(path=str(shards), window=256, batch_size=6, loader_workers=0, shuffle_buffer=20, bucket_batches=2)
    batch = next(iter(train_loader(cfg, 0, batches=1, seed=3)))
    tokens, siblings = np.asarray(batch["tokens"]), np.asarray(batch["sibling"])
    lengths, sib_lengths = np.asarray(batch["lengths"]), np.asarray(batch["sibling_lengths"])

    def dist(i: int, j: int) -> float:
        a, b = tokens[i, : lengths[i]].tobytes(), siblings[j, : sib_lengths[j]].tobytes()
        return edlib.align(a, b)["editDistance"] / max(len(a), len(b))

    for i in range(len(tokens)):
        own = dist(i, i)
        assert 0 < own <= 0.2, own  # mutated a little (up to 0.3 x 35 % = 10.5 %, indels of 1-3 bases)
        assert all(own * 2.5 < dist(i, j) for j in range(len(tokens)) if j != i)

    torch.manual_seed(0)
    a = torch.randn(6, 32)
    v = a + 0.5 * torch.randn(6, 32)
    near = a + 0.4 * torch.randn(6, 32)  # siblings as near the window as the view is
    assert contrastive_loss(a, v, sibling=near) > contrastive_loss(a, v) + 0.1
    # vectors that keep the window's own detail (the view shares it, the sibling does not) score better
    detail = torch.randn(6, 32)
    keeps = contrastive_loss(a + detail, v + detail, sibling=near)
    assert keeps < contrastive_loss(a, v, sibling=near)


def _train(
    tmp: Path, shards: Path, *extra: str, timeout: float = 420, env_extra: dict | None = None
) -> subprocess.CompletedProcess:
    env = {
        **__import__("os").environ,
        **(env_extra or {}),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "gene_ae.train",
        "--data",
        str(shards),
        "--config",
        str(TINY),
        "--workers",
        "2",
        "--storage",
        str(tmp / "runs"),
        *extra,
    ]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, shards) -> tuple[Path, subprocess.CompletedProcess]:
    """(its folder, the finished process) of a 2-rank run whose rank 1 died at step 5; trained once for the
    tests below (each Ray Train start-up costs about 20 s on 2 cores)."""
    tmp = tmp_path_factory.mktemp("kill")
    return tmp, _train(tmp, shards, "--name", "kill", "--set", "train.steps=8", env_extra={FAIL_AT_STEP_ENV: "5"})


def test_two_workers_end_to_end_and_resume_after_a_worker_dies(killed_run):
    """shards -> 2-rank DDP -> rank 1 dies at step 5 -> restore from the step-3 checkpoint -> finish ->
    MLflow run with metrics and a registered, tagged version."""
    tmp_path, proc = killed_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "rank 1 exits at step 5" in log
    assert "resumed from checkpoint at step 3" in log
    assert "PreemptionWatcher" not in log  # off on a local Ray: its start logged an error-level line every run
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient()
    version = client.get_model_version("gene-ae-encoder", "1")
    run = client.get_run(version.run_id)
    assert run.data.params["model.vector_dim"] == "32"
    assert len(run.data.tags["data.manifest_sha256"]) == 64
    assert 0 <= run.data.metrics["val_accuracy"] <= 1
    assert 0 <= float(version.tags["val_recall_at_1"]) <= 1
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert max(steps) == 8 and 0 not in steps  # the counter went on from the checkpoint, never restarted
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "loss_curve.png" in artifacts and "config.json" in artifacts
    ckpts = sorted(p for p in (tmp_path / "runs" / "kill").glob("checkpoint_*") if p.is_dir())
    state = torch.load(ckpts[-1] / "trainer.pt", weights_only=False)
    assert state["step"] == 8


def test_a_finished_run_is_refused_in_one_line_and_a_larger_steps_continues_it(killed_run, shards) -> None:
    """Rerunning a finished job under the same --name and --storage restored its last checkpoint and then
    trained for ever (webdataset's with_epoch(0) has no end). Now the rerun is refused before Ray starts,
    naming the step it finished at; more steps continue from that checkpoint, to the new end. (After the test
    above, which reads the run as it finished at step 8.)"""
    tmp_path, first = killed_run
    assert first.returncode == 0, first.stderr[-3000:]
    again = _train(tmp_path, shards, "--name", "kill", "--set", "train.steps=8", timeout=120)
    assert again.returncode == 1, again.stderr[-2000:]
    assert "resuming" not in again.stdout  # refused before MLflow and Ray
    errors = again.stderr.strip().splitlines()
    assert len(errors) == 1, again.stderr[-2000:]
    assert errors[0].startswith("gene-ae train: error: train.steps: must be > 8 "), errors[0]
    assert "finished at step 8" in errors[0] and "--name" in errors[0]
    more = _train(tmp_path, shards, "--name", "kill", "--set", "train.steps=10")
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from checkpoint at step 8" in more.stdout and "step 10/10" in more.stdout, more.stdout[-2000:]
    assert (tmp_path / "runs" / "kill" / "finished_step").read_text().strip() == "10"


def test_corrupt_shard_fails_fast_naming_it(tmp_path, shards):
    bad = tmp_path / "bad"
    bad.mkdir()
    for item in shards.iterdir():
        target = bad / item.name
        if item.is_dir():
            target.mkdir()
            for f in item.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
        else:
            target.write_bytes(item.read_bytes())
    victims = sorted((bad / "train").glob("*.tar"))
    for victim in victims:  # every train shard, so whichever the resampler opens first is bad
        with tarfile.open(victim) as tar:
            member = tar.getmembers()[0]
        raw = bytearray(victim.read_bytes())
        start = member.offset_data + 200
        raw[start : start + 256] = bytes(256)  # zero a stretch of the compressed block, keep the tar intact
        victim.write_bytes(bytes(raw))
    proc = _train(
        tmp_path, bad, "--name", "bad", "--set", "train.max_failures=0", "--set", "data.loader_workers=0", timeout=300
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gene-ae train: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    last = errors[0]
    assert "corrupt block" in last
    assert any(str(v) in last for v in victims), last


def test_sigterm_to_the_driver_stops_ray_in_order_and_says_how_to_resume(tmp_path, shards):
    """SIGTERM mid-training (issue 34): one line saying the checkpoints are kept and how to resume, exit 143, not
    the native crash dump Ray's own SIGTERM handler printed."""
    import signal

    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    cmd = [sys.executable, "-m", "gene_ae.train", "--data", str(shards), "--config", str(TINY), "--storage",
           str(tmp_path / "runs"), "--steps", "100000", "--register", ""]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # training has started: its first step lines reach the driver
        if line.startswith("[gene-ae] step"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("gene-ae train: terminated; the checkpoints written so far are kept"), err[-2000:]
    # not Ray's native crash dump, nor a traceback of the interrupt (Ray's own warnings may carry one: under load
    # its controller's resource request times out and is logged with its stack, a warning Ray calls safe)
    assert "SIGTERM received" not in err and "KeyboardInterrupt" not in err and "*** " not in err, err[-6000:]
