"""`gene-ae` against a careless user, part two: every error is one line, exit 1, found before any work (no model
loaded, nothing written), names what the user typed; long steps show progress on a terminal and stay quiet
otherwise.

A tiny untrained checkpoint and 20 real dog genes; a real MLflow sqlite registry for `serve`. Errors run
in-process through `main(argv)`; `serve` runs as a subprocess, since once its checks pass it replaces the
process with `mlflow models serve`. Where an error must come before the model loads, --model names a
checkpoint that does not exist: the error is about --out or --input, so the model was never looked at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shared import REPO, one_line_error, tiny_model

from gene_ae.cli import main
from gene_ae.core.records import iter_input
from gene_ae.model.checkpoint import save as save_checkpoint
from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig

EVAL_FAST = ("--methods", "gene-ae,5-mer", "--n-queries", "4", "--align-queries", "0")


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    """A tiny untrained checkpoint and 20 dog genes as FASTA."""
    root = tmp_path_factory.mktemp("hardening")
    cfg, tiny = tiny_model()
    ckpt = save_checkpoint(root / "ckpt", cfg, tiny.model)
    genes = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:20]
    (root / "genes.fa").write_text("".join(f">{g.id} class={g.label}\n{decode(g.tokens)}\n" for g in genes))
    return {"root": root, "ckpt": ckpt, "genes": root / "genes.fa", "one": decode(genes[0].tokens)}


def gene_ae(capsys, *args: object) -> tuple[int, str, str]:
    """`gene-ae ARGS` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def cli_error(command: str, code: int, stdout: str, err: str) -> str:
    """A `gene-ae COMMAND` error (shared.one_line_error) that printed nothing else and names no hidden temporary."""
    assert stdout == "", stdout
    line = one_line_error(err, rc=code, prefix=f"gene-ae {command}: error: ")
    assert ".tmp-" not in line, err  # never a hidden temporary name the user did not type
    return line


# ------------------------------------------------------------------- 1. serve: port and model checked first


def test_serve_refuses_a_busy_port_and_a_model_the_registry_lacks_in_one_line(world, tmp_path) -> None:
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    registry = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=registry, registry_uri=registry)
    client.create_registered_model("gene-ae-encoder")
    (tmp_path / "source").mkdir()
    client.create_model_version("gene-ae-encoder", str(tmp_path / "source"))
    client.set_registered_model_alias("gene-ae-encoder", "staging", "1")
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            ("models:/nosuch@production", (), registry, "models:/nosuch@production: no registered model 'nosuch'"),
            ("models:/gene-ae-encoder@production", (), registry,
             "models:/gene-ae-encoder@production: model 'gene-ae-encoder' has no alias 'production' (its aliases: "
             "@staging -> version 1)"),
            ("models:/gene-ae-encoder/7", (), registry, "model 'gene-ae-encoder' has no version 7"),
            ("models:/gene-ae-encoder@staging", ("--port", port), registry,
             f"--port {port} on 127.0.0.1: already in use"),
            (str(tmp_path / "nothing"), (), registry, f"{tmp_path / 'nothing'}: no such file or directory"),
            (str(world["ckpt"]), (), registry, "not an MLflow model directory (no MLmodel file)"),
            ("models:/gene-ae-encoder@staging", (), f"sqlite:///{tmp_path / 'none.db'}",
             f"no MLflow store at sqlite:///{tmp_path / 'none.db'}"),
        ]  # fmt: skip
        for model, extra, uri, message in cases:
            done = subprocess.run(
                [sys.executable, "-m", "gene_ae.cli", "serve", "--model", model, *map(str, extra)],
                cwd=REPO, env={**env, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            line = cli_error("serve", done.returncode, done.stdout, done.stderr)
            assert message in line, (model, done.stderr)
    assert not (tmp_path / "none.db").exists()  # a registry that is not there is not created by looking


@pytest.mark.parametrize("text", [":::: not yaml [\n", "- a list\n- not a model\n", "flavors:\n  sklearn: {}\n"])
def test_serve_refuses_a_model_directory_whose_mlmodel_serves_nothing(tmp_path, text) -> None:
    """An MLmodel that is damaged, or describes no python_function flavor: `mlflow models serve` started and then
    failed with a traceback."""
    from gene_ae.registry.serve_model import free_port

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "gene_ae.cli", "serve", "--model", str(tmp_path / "model"), "--port", str(free_port())],
        cwd=REPO, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    line = cli_error("serve", done.returncode, done.stdout, done.stderr)
    assert str(tmp_path / "model") in line and "MLmodel" in line, line


# ------------------------------------------------------------------------ 2. --out checked before any work


@pytest.mark.parametrize("case", ["missing folder", "a directory", "under a file"])
def test_reconstruct_refuses_an_out_it_could_not_write_before_the_model_loads(world, capsys, tmp_path, case):
    (tmp_path / "results").mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    out = {
        "missing folder": tmp_path / "no" / "such" / "rec.tsv",
        "a directory": tmp_path / "results",
        "under a file": tmp_path / "notes.txt" / "rec.tsv",
    }[case]
    code, stdout, err = gene_ae(
        capsys, "reconstruct", "--model", tmp_path / "no-model", "--input", world["genes"], "--out", out
    )
    line = cli_error("reconstruct", code, stdout, err)
    assert f"--out {out}: " in line, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "results"]
    assert list((tmp_path / "results").iterdir()) == [] and (tmp_path / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("case", ["the query", "a link to the query", "index.json", "a new file in the index"])
def test_search_refuses_an_out_that_would_replace_its_query_or_index_files(world, capsys, tmp_path, case) -> None:
    """`--out` naming the query file (or a link to it) replaced the user's queries with hits, exit 0; naming
    index.json replaced the index's description with hits: both are refused before anything is read."""
    code, _, err = gene_ae(capsys, "embed", "--model", world["ckpt"], "--input", world["genes"], "--out",
                           tmp_path / "idx")  # fmt: skip
    assert code == 0, err
    query = tmp_path / "q.fa"
    query.write_text(f">q\n{world['one']}\n")
    (tmp_path / "q-link.fa").symlink_to(query)
    out = {"the query": query, "a link to the query": tmp_path / "q-link.fa", "index.json": tmp_path / "idx" /
           "index.json", "a new file in the index": tmp_path / "idx" / "hits.tsv"}[case]  # fmt: skip
    before = {p: p.read_bytes() for p in [query, *sorted((tmp_path / "idx").iterdir())]}
    code, stdout, err = gene_ae(capsys, "search", "--index", tmp_path / "idx", query, "--out", out)
    line = cli_error("search", code, stdout, err)
    want = "is the input" if "query" in case else f"inside the index {tmp_path / 'idx'}"
    assert line.startswith(f"gene-ae search: error: --out {out}: {want}"), line
    assert {p: p.read_bytes() for p in [query, *sorted((tmp_path / "idx").iterdir())]} == before
    code, stdout, err = gene_ae(capsys, "reconstruct", "--model", world["ckpt"], "--input", query, "--out", out)
    if "query" in case:
        assert "is the input" in cli_error("reconstruct", code, stdout, err) and query.read_bytes() == before[query]


@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_eval_refuses_a_report_directory_it_could_not_write_before_the_model_loads(world, capsys, tmp_path, case):
    (tmp_path / "notes.txt").write_text("mine\n")
    out = {"a file": tmp_path / "notes.txt", "under a file": tmp_path / "notes.txt" / "report"}[case]
    code, stdout, err = gene_ae(capsys, "eval", "--model", tmp_path / "no-model", "--input", world["genes"],
                                "--out", out, *EVAL_FAST)  # fmt: skip
    line = cli_error("eval", code, stdout, err)
    assert f"--out {out}: " in line and "not a" in line, err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine\n"


def test_embed_refuses_an_out_under_a_file_before_the_model_loads(world, capsys, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "notes.txt" / "index"
    code, stdout, err = gene_ae(capsys, "embed", "--model", tmp_path / "no-model", "--input", world["genes"],
                                "--out", out)  # fmt: skip
    line = cli_error("embed", code, stdout, err)
    assert line == f"gene-ae embed: error: --out {out}: {tmp_path / 'notes.txt'} is a file, not a folder", err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------- 3. empty input is an error


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_reconstruct_of_an_empty_input_is_a_one_line_error(world, capsys, tmp_path, text) -> None:
    empty = tmp_path / "empty.fa"
    empty.write_text(text)
    out = tmp_path / "rec.tsv"
    code, stdout, err = gene_ae(capsys, "reconstruct", "--model", tmp_path / "no-model", "--input", empty,
                                "--out", out)  # fmt: skip
    line = cli_error("reconstruct", code, stdout, err)
    assert line == f"gene-ae reconstruct: error: {empty}: no sequences to reconstruct", err
    assert not out.exists()
    code, stdout, err = gene_ae(capsys, "reconstruct", "--model", world["ckpt"], "--input", empty)
    assert cli_error("reconstruct", code, stdout, err).endswith("no sequences to reconstruct")


# -------------------------------------------------------------- 4. a collection too small to measure


@pytest.mark.parametrize("copies", [1, 3])
def test_eval_refuses_a_collection_of_fewer_than_two_distinct_sequences(world, capsys, tmp_path, copies) -> None:
    """One sequence (or copies of one) finds itself first with every method: recall 1.0 means nothing."""
    tiny = tmp_path / "tiny.fa"
    tiny.write_text("".join(f">copy{i}\n{world['one']}\n" for i in range(copies)))
    out = tmp_path / "report"
    code, stdout, err = gene_ae(capsys, "eval", "--model", tmp_path / "no-model", "--input", tiny, "--out", out,
                                *EVAL_FAST)  # fmt: skip
    line = cli_error("eval", code, stdout, err)
    n = f"{copies} sequence{'s' if copies > 1 else ''}, 1 distinct"
    assert line.startswith(f"gene-ae eval: error: {tiny}: {n}: evaluation needs at least 2 distinct sequences"), err
    assert not out.exists()


# ------------------------------------------------------------------------------- 5. progress on a terminal


def test_embed_and_eval_print_only_their_summary_line_to_a_stderr_that_is_not_a_terminal(world, capsys, tmp_path):
    index = tmp_path / "index"
    code, stdout, err = gene_ae(capsys, "embed", "--model", world["ckpt"], "--input", world["genes"], "--out", index)
    assert code == 0 and stdout == "", err
    assert len(err.splitlines()) == 1 and err.startswith("gene-ae embed: 20 records") and index.is_dir(), err
    report = tmp_path / "report"
    code, stdout, err = gene_ae(capsys, "eval", "--model", world["ckpt"], "--input", world["genes"], "--out", report,
                                *EVAL_FAST)  # fmt: skip
    assert code == 0 and stdout.startswith("recall@1"), err
    assert err.splitlines() == [f"gene-ae eval: 20 sequences; report in {report}/report.md"], err


def test_embed_counts_bases_and_eval_its_phases_on_a_terminal(world, terminal, monkeypatch, tmp_path) -> None:
    tty, sent = terminal
    monkeypatch.setattr(sys, "stderr", tty)  # here, not in the fixture: pytest sets its own between phases
    with pytest.raises(SystemExit) as done:
        main(["embed", "--model", str(world["ckpt"]), "--input", str(world["genes"]), "--out", str(tmp_path / "i")])
    assert done.value.code == 0
    with pytest.raises(SystemExit) as done:
        main(["eval", "--model", str(world["ckpt"]), "--input", str(world["genes"]), "--out", str(tmp_path / "r"),
              *EVAL_FAST])  # fmt: skip
    assert done.value.code == 0
    monkeypatch.undo()
    time.sleep(0.5)  # let the reader take the last bytes
    shown = sent()
    assert "embed:" in shown and "vectors:" in shown and "bp/s" in shown, shown  # bars by bases
    assert "chunk" not in shown, shown
    assert "eval:" in shown and "mutation_retrieval" in shown and "writing the report" in shown, shown
    assert "gene-ae embed: 20 records" in shown and "gene-ae eval: 20 sequences" in shown


def test_run_eval_refuses_one_sequence_as_a_library_call_too(world, tmp_path) -> None:
    from gene_ae.evaluate import EvalConfig, run_eval
    from shard_tools.alphabet import encode

    with pytest.raises(ValueError, match="needs at least 2 distinct sequences"):
        run_eval(None, [encode(world["one"])] * 2, ["a", "b"], None, EvalConfig(methods=("5-mer",)), tmp_path / "r")
    assert not (tmp_path / "r").exists()
