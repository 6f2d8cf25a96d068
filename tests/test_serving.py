"""The encoder as users reach it: registry + alias, Python API, `mlflow models serve`, and the gene-ae CLI.

The CLI runs as the installed `gene-ae` script where the process is the point (one embed and one search,
one error, `gene-ae serve`, `embed --ray`), else through its `main` in this process (the `cli` fixture).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from shared import tiny_model

from gene_ae import Encoder
from gene_ae.core.mutate import mutate
from gene_ae.index.directory import IndexDir
from gene_ae.model import checkpoint
from gene_ae.registry import tracking
from gene_ae.registry.serve_model import free_port, running, serving
from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig, read_records


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir) -> dict:
    """A real sqlite MLflow store with a registered encoder at @production, plus genes to query."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    cfg, tiny = tiny_model()
    ckpt = checkpoint.save(root / "ckpt", cfg, tiny.model)
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    old_cwd = os.getcwd()
    os.chdir(root)  # the sqlite store's artifacts land beside it
    with mlflow.start_run():
        info = tracking.log_encoder(ckpt, register="gene-ae-encoder", tags={"val_recall_at_1": "0.5"})
    tracking.set_alias("gene-ae-encoder", info.registered_model_version, "production")
    recs = list(read_records(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:60]
    yield {"uri": uri, "root": root, "ckpt": ckpt, "version": info.registered_model_version, "recs": recs}
    os.chdir(old_cwd)
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def _cli(store, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "gene-ae"), *map(str, args)],
        cwd=store["root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
    )


def test_promote_then_load_by_alias_matches_the_checkpoint(store, cli):
    code, _, err = cli("gene-ae", "promote", "--version", store["version"], "--alias", "production")
    assert code == 0, err
    seqs = [decode(r.tokens) for r in store["recs"][:5]]
    by_alias = Encoder.load("models:/gene-ae-encoder@production").embed(seqs)
    by_version = Encoder.load(f"models:/gene-ae-encoder/{store['version']}").embed(seqs)
    local = Encoder.load(str(store["ckpt"])).embed(seqs)
    assert by_alias.shape == (5, 64) and by_alias.dtype == np.float32
    np.testing.assert_allclose(by_alias, local, atol=1e-6)
    np.testing.assert_allclose(by_version, local, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(local, axis=1), 1.0, atol=1e-5)
    version = mlflow.MlflowClient().get_model_version("gene-ae-encoder", str(store["version"]))
    assert version.tags["val_recall_at_1"] == "0.5"


def test_champion_challenger_only_promotes_a_better_version(store):
    client = mlflow.MlflowClient()
    name = "gene-ae-cc"
    with mlflow.start_run():
        v1 = tracking.log_encoder(store["ckpt"], register=name, tags={"val_recall_at_1": "0.6"})
        v2 = tracking.log_encoder(store["ckpt"], register=name, tags={"val_recall_at_1": "0.4"})
        v3 = tracking.log_encoder(store["ckpt"], register=name, tags={"val_recall_at_1": "0.7"})
    assert tracking.promote_if_better(name, v1.registered_model_version, "production")
    assert not tracking.promote_if_better(name, v2.registered_model_version, "production")
    assert str(client.get_model_version_by_alias(name, "production").version) == str(v1.registered_model_version)
    assert tracking.promote_if_better(name, v3.registered_model_version, "production")
    assert str(client.get_model_version_by_alias(name, "production").version) == str(v3.registered_model_version)
    assert (
        client.get_model_version(name, str(v2.registered_model_version)).tags["challenger.production.promoted"]
        == "false"
    )


def _post(port: int, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_mlflow_models_serve_by_alias(store, cli):
    cli("gene-ae", "promote", "--version", store["version"], "--alias", "production")
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    with serving("models:/gene-ae-encoder@production", env, cwd=store["root"]) as port:
        seqs = [decode(r.tokens) for r in store["recs"][:4]]
        expected = Encoder.load(str(store["ckpt"])).embed(seqs)
        status, body = _post(port, {"inputs": seqs})
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["predictions"], dtype=np.float32), expected, atol=1e-5)
        status, body = _post(port, {"dataframe_split": {"columns": ["sequence"], "data": [[s] for s in seqs]}})
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["predictions"], dtype=np.float32), expected, atol=1e-5)
        status, body = _post(port, {"inputs": ["ACGT", "MKVLEEPLQ"]})
        assert (
            status == 400 and "row 1" in body.get("message", "") and "'L' at sequence position 4" in body["message"]
        ), body
        status, body = _post(port, {"inputs": ["ACGT", ""]})
        assert status == 400 and "row 1: empty sequence" in body.get("message", ""), body


def test_gene_ae_serve_runs_from_the_venv_binary_without_the_venv_on_path(store, cli):
    """`mlflow models serve` execs `uvicorn` by name: with the venv's bin off PATH that exec fails (127), while
    `gene-ae serve`, started by its path in the venv, serves /invocations."""
    bin_dir = Path(sys.executable).parent
    bare = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d and Path(d) != bin_dir)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": bare}
    env.pop("VIRTUAL_ENV", None)
    assert shutil.which("uvicorn", path=bare) is None and shutil.which("gene-ae", path=bare) is None
    model = "models:/gene-ae-encoder@production"
    cli("gene-ae", "promote", "--version", store["version"], "--alias", "production")
    plain = subprocess.run(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local", "-p", str(free_port())],
        cwd=store["root"], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert plain.returncode != 0 and "Return code = 127" in plain.stderr, plain.stderr[-2000:]
    port = free_port()
    with running([str(bin_dir / "gene-ae"), "serve", "--model", model, "--port", str(port)], port, env, store["root"]):
        seqs = [decode(r.tokens) for r in store["recs"][:3]]
        status, body = _post(port, {"inputs": seqs})
        assert status == 200, body
        expected = Encoder.load(str(store["ckpt"])).embed(seqs)
        np.testing.assert_allclose(np.array(body["predictions"], dtype=np.float32), expected, atol=1e-5)
    assert _refused(port)


def _refused(port: int, wait_s: float = 30) -> bool:
    """Nothing listens on the port any more (the server and its uvicorn child are gone), within wait_s:
    uvicorn's workers finish their graceful shutdown a moment after the group is signalled."""
    deadline = time.time() + wait_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
        except OSError:
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.5)


def test_embed_and_search_find_exact_and_mutated_copies(store, tmp_path, cli):
    """The one real `gene-ae embed` then `gene-ae search` (installed script, model by alias); every other
    search of the index, and the --overwrite checks, run in-process."""
    recs = store["recs"]
    collection = tmp_path / "collection.fa"
    collection.write_text("".join(f">{r.id}_gene class={r.fields['label']}\n{decode(r.tokens)}\n" for r in recs))
    rng = np.random.default_rng(1)
    picks = [3, 17, 42]
    queries = tmp_path / "queries.fa"
    queries.write_text(
        "".join(
            f">exact{i}\n{decode(recs[i].tokens)}\n>mut{i}\n{decode(mutate(recs[i].tokens, 0.05, rng))}\n"
            for i in picks
        )
    )
    index = tmp_path / "index"
    proc = _cli(store, "embed", "--model", "models:/gene-ae-encoder@production", "--input", collection, "--out", index)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((index / "index.json").read_text())
    assert meta["model_version"] == str(store["version"]) and meta["records"] == len(recs)
    proc = _cli(store, "search", "--index", index, queries, "-k", "10")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split("\t")[:4] == ["query_id", "subject_id", "rank", "similarity"]
    hits: dict[str, list[str]] = {}
    for line in lines[1:]:
        q, subject, rank, sim, *_ = line.split("\t")
        hits.setdefault(q, []).append(subject)
    for i in picks:
        target = f"{recs[i].id}_gene"
        assert hits[f"exact{i}"][0] == target
        assert target in hits[f"mut{i}"][:10]
    _, piped, _ = cli("gene-ae", "search", "--index", index, "-", "-k", "1", stdin=f">q\n{decode(recs[5].tokens)}\n")
    assert piped.splitlines()[1].split("\t")[1] == f"{recs[5].id}_gene"
    # Two-stage search: the top 10 re-ordered by alignment identity; a 20 %-mutated copy then ranks its
    # source first, with the identity edlib gives (about 0.8 for 20 % events, indels included).
    far = tmp_path / "far.fa"
    far.write_text("".join(f">far{i}\n{decode(mutate(recs[i].tokens, 0.2, rng))}\n" for i in picks))
    # (--deep-below 0.7: near queries here, ranked by identity; a remote one's hits come in blastn's score order)
    base = ("search", "--index", index, far, "-k", "3", "--deep-below", "0.7")
    code, reranked, err = cli("gene-ae", *base, "--rerank", "10", "--collection", collection)
    assert code == 0, err
    rows = [line.split("\t") for line in reranked.strip().splitlines()]
    assert rows[0][-1] == "identity" and len(rows) == 1 + 3 * len(picks)
    by_query: dict[str, list[list[str]]] = {}
    for row in rows[1:]:
        by_query.setdefault(row[0], []).append(row)
    for i in picks:
        top = by_query[f"far{i}"]
        assert top[0][1] == f"{recs[i].id}_gene", top
        idents = [float(r[-1]) for r in top]
        assert idents == sorted(idents, reverse=True) and 0.7 < idents[0] < 0.95, idents
    code, _, err = cli("gene-ae", *base, "--rerank", "-1", "--collection", collection)
    assert code == 1 and "argument --rerank: must be an integer in [0, 10000]" in err
    code, stored, err = cli("gene-ae", *base, "--rerank", "10")  # the index holds its sequences: --collection optional
    assert code == 0 and stored == reranked, err
    code, _, err = cli("gene-ae", *base, "--rerank", "10", "--collection", far)
    assert code == 1 and "indexed records are not in it" in err
    # A 25 %-mutated copy: reranked by default (identity last), plain with --rerank 0 (was test_search.py's
    # own embed-then-search run of the CLI, on a 20-gene index of the same genes and the same model).
    far25 = tmp_path / "far25.fa"
    far25.write_text(f">far\n{decode(mutate(recs[6].tokens, 0.25, np.random.default_rng(5)))}\n")
    code, stdout, err = cli("gene-ae", "search", "--index", index, far25, "-k", "3")
    assert code == 0, err
    header, first, *_ = [line.split("\t") for line in stdout.splitlines()]
    assert header[-1] == "identity" and first[1] == f"{recs[6].id}_gene" and 0.65 < float(first[-1]) < 0.85
    code, stdout, err = cli("gene-ae", "search", "--index", index, far25, "-k", "3", "--rerank", "0")
    assert code == 0, err
    header, *plain = [line.split("\t") for line in stdout.splitlines()]
    assert "identity" not in header and len(plain) == 3 and len(plain[0]) == len(header)
    # --overwrite replaces an index, never a folder that is not one.
    victim = tmp_path / "not-an-index"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    again = ("gene-ae", "embed", "--model", store["ckpt"], "--input", collection, "--overwrite", "--out")
    code, _, err = cli(*again, victim)
    assert code == 1 and "not a gene-ae index" in err and (victim / "precious.txt").exists()
    code, _, err = cli(*again, index)
    assert code == 0, err
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_bad_inputs_are_one_line_errors(store, tmp_path, cli):
    """Each case in-process; the one that loads a registered model also as the installed script, where
    MLflow's own logging and progress output would show as extra lines."""
    protein = tmp_path / "protein.fa"
    protein.write_text(">p1\nMKVLEEPLQWRT\n")
    cases = [
        ("search", "--index", tmp_path / "missing-index", protein),
        ("embed", "--model", "models:/gene-ae-encoder@production", "--input", protein, "--out", tmp_path / "i"),
        ("embed", "--model", "models:/no-such-model@production", "--input", protein, "--out", tmp_path / "i"),
        ("reconstruct", "--model", tmp_path / "nowhere", "--input", protein),
        ("reconstruct", "--model", protein, "--input", protein),  # a file is not a model: no endless recursion
    ]
    real = _cli(store, *cases[1])
    runs = [(args, cli("gene-ae", *args)) for args in cases] + [(cases[1], (real.returncode, "", real.stderr))]
    for args, (code, _, stderr) in runs:
        assert code == 1, (args, stderr)
        err = stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"gene-ae {args[0]}: error:"), (args, stderr)
    assert not (tmp_path / "i").exists()
    assert "protein.fa:1: record 'p1': non-nucleotide character 'L'" in real.stderr


def test_eval_reports_every_metric_and_both_baselines(store, tmp_path, data_dir, cli):
    genes = tmp_path / "genes.tsv"
    with gzip.open(data_dir / "genefam" / "dog_sample.tsv.gz", "rt", newline="") as f:
        genes.write_text("".join(f.readline() for _ in range(41)))
    code, stdout, err = cli(
        "gene-ae",
        "eval",
        "--model",
        str(store["ckpt"]),
        "--input",
        genes,
        "--label-column",
        "class",
        "--out",
        tmp_path / "report",
        "--n-queries",
        "20",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    methods = set(report["mutation_retrieval"]["methods"])
    assert {"gene-ae", "5-mer", "7-mer", "7-mer@64", "sourmash-k11", "sourmash-k21"} <= methods  # the strong baselines
    assert len(methods) == 10 and report["mutation_retrieval"]["alignment_ceiling"]["n_queries"] == 20
    for section in ("mutation_retrieval", "label_retrieval", "distance_faithfulness", "reconstruction"):
        assert section in report
    recall = report["mutation_retrieval"]["methods"]["5-mer"]["recall@1"]
    assert recall[0] == 1.0 and all(0 <= r <= 1 for r in recall)
    for png in ("recall_vs_divergence.png", "embedding_map.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000
    assert "recall@1" in stdout


def test_reconstruct_reports_identity(store, tmp_path, cli):
    fa = tmp_path / "one.fa"
    long_one = next(r for r in store["recs"] if r.tokens.size >= 300)
    fa.write_text(f">g1\n{decode(long_one.tokens[:300])}\n")
    code, stdout, err = cli("gene-ae", "reconstruct", "--model", str(store["ckpt"]), "--input", fa)
    assert code == 0, err
    rid, length, identity, seq = stdout.splitlines()[1].split("\t")
    assert rid == "g1" and int(length) == 300 and len(seq) == 300 and 0 <= float(identity) <= 1


def test_embed_with_ray_builds_the_shards_in_parallel_as_the_local_build(store, tmp_path, cli):
    """`gene-ae embed --ray` (a task per shard on a local Ray; a subprocess, so its Ray stops with it) writes the
    index the in-process path writes: the same shards, records, vectors and hits."""
    genes = tmp_path / "genes.fa"
    genes.write_text("".join(f">{r.id}\n{decode(r.tokens)}\n" for r in store["recs"][:12]))
    flags = ["--input", genes, "--shard-records", "5"]
    code, _, err = cli("gene-ae", "embed", "--model", store["ckpt"], *flags, "--out", tmp_path / "local")
    assert code == 0, err
    proc = _cli(store, "embed", "--model", store["ckpt"], *flags, "--out", tmp_path / "ray", "--ray")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "12 records in 3 shards" in proc.stderr
    for shard in (".", "shard-00001", "shard-00002"):
        local, via_ray = (IndexDir.open(tmp_path / d / shard) for d in ("local", "ray"))
        assert local.dense.ntotal == (5 if shard != "shard-00002" else 2)
        rows = np.arange(local.dense.ntotal)
        np.testing.assert_array_equal(via_ray.record_vectors(rows), local.record_vectors(rows))  # the same codes
        assert local.meta.entries.ids == via_ray.meta.entries.ids
        assert local.meta.entries.length.tolist() == via_ray.meta.entries.length.tolist()
    every = ("--sources", "dense,windows,sparse")  # the vectors too: the part the two builds could differ in
    found = [
        _cli(store, "search", "--index", tmp_path / d, genes, "--rerank", "0", *every).stdout for d in ("local", "ray")
    ]
    rows = [[line.split("\t")[:3] for line in f.splitlines()] for f in found]
    assert len(rows[0]) == 121 and rows[0] == rows[1]  # header + 12 queries x 10 hits: subject and rank alike
