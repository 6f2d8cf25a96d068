"""Checks made before any work (issue 34): registry names and storage before a training step, a tracking store
that must exist when a model is looked up (never created on read), and a tracking server that does not answer,
each one line naming what is wrong, within 30 s."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import mlflow
import pytest
import torch

from gene_ae.config import Config
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.registry import tracking
from gene_ae.train.driver import main as train_main
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.writer import ShardConfig, ShardWriter


@pytest.fixture(scope="module")
def shards(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("shards") / "shards"
    recs = islice(read_records(data_dir / "genefam" / "chimp_sample.tsv.gz", ReaderConfig(label_column="class")), 300)
    ShardWriter(out, ShardConfig(block_bases=20_000)).write(
        [dataclasses.replace(r, tokens=r.tokens[:600]) for r in recs], {"command": ["tests"]}
    )
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny untrained checkpoint directory."""
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=32, window=256, downsample=4)
    return checkpoint.save(tmp_path_factory.mktemp("ckpt") / "ckpt", cfg, GeneAE(cfg.model))


@pytest.fixture
def tracking_at(monkeypatch) -> Iterator:
    """tracking_at(uri): MLflow pointed at uri for the test (environment and the process's setting). The active
    experiment is put back afterwards too: train's mlflow_run sets it (a module global and MLFLOW_EXPERIMENT_ID),
    and a later test's start_run in this process looked up that id in its own store ("No Experiment with id=1")."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")  # recorded as unset (or as it was), so restored afterwards
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)

    def point(uri: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)

    yield point
    mlflow.set_tracking_uri(None)


@pytest.fixture
def silent_server(monkeypatch) -> Iterator[str]:
    """http://127.0.0.1:PORT of a socket that accepts connections and never answers. Requests to it time out
    after 2 s, not the default 10 (test_requests_to_a_tracking_server_are_bounded checks the defaults' sum)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("name", ["my model", "team/encoder", "a:b"])
def test_a_registry_name_mlflow_would_refuse_is_refused_before_training(tmp_path, capsys, name) -> None:
    code = train_main(["--data", str(tmp_path), "--register", name, "--storage", str(tmp_path / "runs")])
    line = _one_error(capsys.readouterr().err)
    assert code == 1 and line.startswith("gene-ae train: error: train.register: must be a model name"), line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_unwritable_storage_is_refused_before_training(tmp_path, shards, capsys, tracking_at) -> None:
    tracking_at(f"sqlite:///{tmp_path}/mlflow.db")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    places = [blocker / "runs"] + ([Path("/sys/gene-ae-runs")] if Path("/sys").is_dir() else [])
    for storage in places:
        started = time.monotonic()
        code = train_main(["--data", str(shards), "--storage", str(storage), "--steps", "2"])
        line = _one_error(capsys.readouterr().err)
        assert code == 1 and line.startswith(f"gene-ae train: error: --storage {storage}: "), line
        assert time.monotonic() - started < 30
    assert not (tmp_path / "mlflow.db").exists()  # no run was started, FINISHED or otherwise


def test_a_mistyped_sqlite_store_is_an_error_on_lookup_and_is_not_created(tmp_path, cli, tracking_at, ckpt) -> None:
    typo = tmp_path / "mlfow.db"
    uri = f"sqlite:///{typo}"
    tracking_at(uri)
    fasta = tmp_path / "a.fa"
    fasta.write_text(">a\nACGTACGTACGGATTACAGGCATTACA\n")
    assert cli("gene-ae", "embed", "--model", ckpt, "--input", fasta, "--out", tmp_path / "idx")[0] == 0
    model = "models:/gene-ae-encoder@production"
    for args in (
        ["promote", "--version", "1"],
        ["promote", "--version", "1", "--if-better"],
        ["serve", "--model", model, "--port", "1"],
        ["search", "--model", model, "--sources", "dense", "--index", tmp_path / "idx", fasta],
        ["embed", "--model", model, "--input", fasta, "--out", tmp_path / "idx2"],
    ):
        code, _, err = cli("gene-ae", *args)
        line = _one_error(err)
        assert code == 1 and "no MLflow store at " + uri in line, (args, line)
        assert not typo.exists(), args


def test_a_tracking_server_that_never_answers_is_one_line_within_30_s(tmp_path, cli, tracking_at, silent_server):
    tracking_at(silent_server)
    for args in (["promote", "--version", "1"], ["serve", "--model", "models:/m@production", "--port", "1"]):
        started = time.monotonic()
        code, _, err = cli("gene-ae", *args)
        line = _one_error(err)
        assert code == 1 and f"tracking server at {silent_server} did not answer" in line, line
        assert time.monotonic() - started < 30


def test_training_with_a_silent_tracking_server_stops_before_ray(tmp_path, shards, capsys, tracking_at, silent_server):
    tracking_at(silent_server)
    started = time.monotonic()
    code = train_main(["--data", str(shards), "--storage", str(tmp_path / "runs"), "--steps", "2"])
    line = _one_error(capsys.readouterr().err)
    assert code == 1 and f"tracking server at {silent_server} did not answer" in line, line
    assert time.monotonic() - started < 30


def test_requests_to_a_tracking_server_are_bounded(monkeypatch) -> None:
    for key in tracking.HTTP_LIMITS:
        monkeypatch.delenv(key, raising=False)
    env = tracking.bound_requests({"MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"  # the user's own setting is kept
    worst = int(env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) * (1 + int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]))
    assert worst <= 30


def test_resuming_a_run_the_tracking_store_does_not_hold_is_refused_before_ray(tmp_path, shards, capsys, tracking_at):
    """Same --name and --storage, another MLFLOW_TRACKING_URI: MLflow's 'Run ... not found' traceback came after
    Ray had started."""
    marker = tmp_path / "runs" / "gene-ae" / "mlflow_run_id"
    marker.parent.mkdir(parents=True)
    marker.write_text("0123456789abcdef0123456789abcdef")
    for uri in (f"sqlite:///{tmp_path}/other.db", f"sqlite:///{tmp_path}/mlflow.db"):
        if uri.endswith("/mlflow.db"):
            mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # a store that exists, without that run
            capsys.readouterr()  # MLflow's note that it made the tables
        tracking_at(uri)
        code = train_main(["--data", str(shards), "--storage", str(tmp_path / "runs"), "--steps", "2"])
        line = _one_error(capsys.readouterr().err)
        assert code == 1 and "tracked as MLflow run 0123456789abcdef0123456789abcdef" in line, line
        assert f"the store at {uri} does not hold" in line, line
    assert not (tmp_path / "other.db").exists()


def test_a_min_length_no_train_record_reaches_is_refused_before_ray(tmp_path, shards, capsys, tracking_at) -> None:
    """Every record 600 bases, in the histogram's [300, 1000) bin: min_length 700 passed the histogram check and
    failed in the data loader once Ray had started."""
    tracking_at(f"sqlite:///{tmp_path}/mlflow.db")
    code = train_main(["--data", str(shards), "--storage", str(tmp_path / "runs"), "--set", "data.min_length=700"])
    line = _one_error(capsys.readouterr().err)
    assert code == 1 and line.startswith("gene-ae train: error: data.min_length: must be at most 600 "), line


def test_more_workers_than_this_machine_can_place_is_refused_before_ray(tmp_path, shards, capsys, monkeypatch):
    """Ray Train waited for ever, silently, for workers (or GPUs) the local Ray did not have."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cpus = os.cpu_count() or 1
    cases = [(["--workers", str(cpus + 1)], f"--workers {cpus + 1}: this machine has {cpus} CPUs")]
    if not torch.cuda.is_available():
        cases.append((["--gpu", "--workers", "1"], "--gpu: this machine has no CUDA GPU"))
    for extra, message in cases:
        code = train_main(["--data", str(shards), "--storage", str(tmp_path / "runs"), *extra])
        line = _one_error(capsys.readouterr().err)
        assert code == 1 and line.startswith(f"gene-ae train: error: {message}"), line


def test_a_tracking_store_that_is_not_a_database_or_not_an_address_is_one_line_before_ray(
    tmp_path, shards, capsys, tracking_at
) -> None:
    """A sqlite URI naming a file that is not a database, a server address whose port is not a number, a store whose
    folder cannot be made (under a file): each was a traceback (sqlalchemy's "file is not a database", http.client's
    InvalidURL, MLflow's mkdir once Ray had started)."""
    garbage = tmp_path / "notes.db"
    garbage.write_bytes(b"these are my notes, not a database\n" * 50)
    for uri, words in ((f"sqlite:///{garbage}", "is not an SQLite database"),
                       ("http://localhost:notaport", "is not a tracking server address"),
                       (f"sqlite:///{garbage}/mlflow.db", "cannot make the folder of the MLflow store"),
                       (f"file://{garbage}/mlruns", "cannot make the folder of the MLflow store")):  # fmt: skip
        tracking_at(uri)
        code = train_main(["--data", str(shards), "--storage", str(tmp_path / "runs"), "--steps", "2"])
        line = _one_error(capsys.readouterr().err)
        assert code == 1 and line.startswith("gene-ae train: error: MLFLOW_TRACKING_URI: "), line
        assert uri in line and words in line, line
    assert garbage.read_bytes() == b"these are my notes, not a database\n" * 50  # never written


@pytest.mark.parametrize("fault", ["deleted", "truncated"])
def test_a_listed_shard_deleted_or_cut_short_is_one_line_naming_it_before_ray(tmp_path, shards, capsys, tracking_at,
                                                                               fault) -> None:  # fmt: skip
    """Ray started, the data loader failed 40-70 s later and the error came in many lines of Ray's."""
    import shutil

    data = tmp_path / "shards"
    shutil.copytree(shards, data)
    shard = sorted((data / "train").glob("*.tar"))[0]
    if fault == "deleted":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:1000])
    tracking_at(f"sqlite:///{tmp_path}/mlflow.db")
    started = time.monotonic()
    code = train_main(["--data", str(data), "--storage", str(tmp_path / "runs"), "--steps", "2"])
    line = _one_error(capsys.readouterr().err)
    want = "missing (listed in" if fault == "deleted" else "1,000 bytes"
    assert code == 1 and line.startswith(f"gene-ae train: error: {shard}: {want}"), line
    assert time.monotonic() - started < 30


def test_shards_deleted_while_training_still_let_the_encoder_register(tmp_path, shards, ckpt, tracking_at) -> None:
    """The shards moved away mid-run: every step trained (the loader had read them), then registering read the
    manifest again for its digest and failed with a traceback. The digest is the one read when training began."""
    import shutil

    import ray.train

    from gene_ae.train.driver import parse_args, resolve_config
    from gene_ae.train.run import manifest_digest, mlflow_run, register

    data = tmp_path / "shards"
    shutil.copytree(shards, data)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking_at(uri)
    cfg = resolve_config(parse_args(["--data", str(data), "--storage", str(tmp_path / "runs"), "--register",
                                     "vanishing-data"]))  # fmt: skip
    digest = manifest_digest(str(data))[0]
    run_id = mlflow_run(cfg, uri)
    try:
        shutil.rmtree(data)
        result = ray.train.Result(metrics={}, checkpoint=ray.train.Checkpoint.from_directory(ckpt), error=None,
                                  path=str(tmp_path))  # fmt: skip
        where, _ = register(cfg, result, run_id, 0.1)
    finally:
        mlflow.end_run()
    assert where == "models:/vanishing-data/1"
    version = mlflow.MlflowClient().get_model_version("vanishing-data", "1")
    assert version.tags["data.manifest_sha256"] == digest


def test_resuming_a_run_with_another_model_is_refused_before_ray(tmp_path, shards, ckpt, capsys, tracking_at) -> None:
    """Same --name and --storage, other model settings: Ray started, restored the checkpoint into a model of
    another shape and failed after 50 s in lines of Ray's."""
    import shutil

    shutil.copytree(ckpt, tmp_path / "runs" / "gene-ae" / "checkpoint_2026-01-01_00-00-00.000000")  # channels 32
    tracking_at(f"sqlite:///{tmp_path}/mlflow.db")
    tiny = Path(__file__).parent / "configs" / "tiny.toml"  # the checkpoint's model, but for its channels
    code = train_main(["--data", str(shards), "--config", str(tiny), "--storage", str(tmp_path / "runs"), "--steps",
                       "2", "--set", "model.channels=16"])  # fmt: skip
    line = _one_error(capsys.readouterr().err)
    assert code == 1 and line.startswith("gene-ae train: error: model.channels: run 'gene-ae' in "), line
    assert "was trained with channels=32" in line and "this run asks 16" in line, line
