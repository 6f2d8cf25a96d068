"""`gene-ae serve --index` on a real two-node Ray cluster (token auth on, test_cluster_multinode.py's nodes): one
Serve deployment per index shard, hits over HTTP equal to the library's and the CLI's, a shard replica killed
before and during queries (retried, or flagged partial: never silently short), a shard that stays down named
in every answer, bad input refused in one line.

One cluster and one deployment for the module; the CLI runs in a session of its own, stopped by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from shared import tiny_model
from test_cluster_multinode import BIN, Cluster, cluster, free_ports  # noqa: F401  (cluster: the fixture)

from gene_ae.cli import main
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.index.collection import Collection
from gene_ae.model.checkpoint import save as save_checkpoint
from gene_ae.model.encoder import Encoder
from gene_ae.search import engine
from gene_ae.search.columns import tsv_text
from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig

pytestmark = pytest.mark.skipif(not (BIN / "ray").exists(), reason="the ray CLI is not installed next to python")
SHARDS = ("shard-00000", "shard-00001", "shard-00002")


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    """A tiny untrained model; 24 dog genes and a lambda slice as an index in 3 shards and as one; 8 queries."""
    root = tmp_path_factory.mktemp("serve-index")
    cfg, tiny = tiny_model()
    ckpt = save_checkpoint(root / "ckpt", cfg, tiny.model)
    genes = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:24]
    lam = next(iter_input(data_dir / "viruses" / "lambda_phage.fa"))
    records = [(g.id, decode(g.tokens)) for g in genes[:10]] + [("lambda", decode(lam.tokens[:9000]))]
    records += [(g.id, decode(g.tokens)) for g in genes[10:]]
    (root / "genes.fa").write_text("".join(f">{i}\n{s}\n" for i, s in records))
    rng = np.random.default_rng(4)
    queries = [(f"q{j}", decode(mutate(genes[j].tokens, d, rng))) for j, d in zip(range(0, 21, 3), [0.02, 0.1] * 4)]
    queries.append(("qlam", decode(lam.tokens[3000:3600])))
    (root / "q.fa").write_text("".join(f">{i}\n{s}\n" for i, s in queries))
    return {"root": root, "ckpt": ckpt, "queries": queries}


@pytest.fixture(scope="module")
def indexes(world) -> dict[str, Path]:
    import io
    from contextlib import redirect_stderr

    out = {}
    for name, extra in (("sharded", ["--shard-records", "9"]), ("whole", [])):
        out[name] = world["root"] / name
        with pytest.raises(SystemExit) as done, redirect_stderr(io.StringIO()):
            main(["embed", "--model", str(world["ckpt"]), "--input", str(world["root"] / "genes.fa"),
                  "--out", str(out[name]), *extra])  # fmt: skip
        assert done.value.code == 0
    assert len(Collection.open(out["sharded"]).shards) == len(SHARDS)
    return out


@pytest.fixture(scope="module")
def library(world, indexes) -> dict[str, list[list[engine.Hit]]]:
    """engine.search's hits for the queries, on each index (the same model, embed and settings as the CLI)."""
    from gene_ae.core.records import iter_input as read

    encoder = Encoder.load(str(world["ckpt"]))
    embed = partial(encoder.embed_tokens, batch_size=64)
    tokens = [q.tokens for q in read(world["root"] / "q.fa")]
    return {
        name: engine.search(Collection.open(path), tokens, embed, engine.SearchConfig(k=10))
        for name, path in indexes.items()
    }


@pytest.fixture(scope="module")
def served(cluster: Cluster, indexes) -> str:  # noqa: F811  (cluster: the imported fixture)
    """`gene-ae serve --index` joined to the two-node cluster; yields the endpoint's URL."""
    port = free_ports(1)[0]
    env = {**cluster.env, "RAY_ADDRESS": cluster.gcs}
    log = cluster.root / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(BIN / "gene-ae"), "serve", "--index", str(indexes["sharded"]), "--port", str(port),
             "--replica-cpus", "0.45", "--shard-timeout", "2", "--retries", "2"],
            env=env, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        url = _first_line(proc, timeout=240, log=log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: this CLI and nothing else
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _first_line(proc: subprocess.Popen, timeout: float, log: Path) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(proc.stdout.readline().decode().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not found or not found[0].startswith("http://"):
        raise AssertionError(f"gene-ae serve --index did not come up:\n{log.read_text(errors='replace')[-4000:]}")
    return found[0]


def post(url: str, body: object, timeout: float = 120) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _body(world) -> dict:
    return {"sequences": [{"id": i, "sequence": s} for i, s in world["queries"]], "k": 10}


def _by_query(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["query_id"], []).append(r)
    return out


def _got(rows: list[dict]) -> dict[str, list[tuple]]:
    # the region as the library reports it: (0, 0) when no narrower one was located (the TSV writes the whole record)
    return {
        q: [(r["subject_id"], *_region(r), round(r["score"], 9), r["identity"]) for r in rs]
        for q, rs in _by_query(rows).items()
    }


def _region(r: dict) -> tuple[int, int]:
    return (r["subject_start"], r["subject_end"])


def test_endpoint_answers_as_the_library_and_the_cli(served, world, indexes, library, capsys) -> None:
    status, body = post(served, _body(world))
    assert status == 200, body
    assert body["partial"] is False and body["missing_shards"] == []
    rows = body["hits"]
    assert [r["rank"] for r in _by_query(rows)["q0"]] == list(range(1, 11))
    # The library on the same sharded index: the same subjects, regions, scores and identities, in order.
    entries = Collection.open(indexes["sharded"]).entries
    want = {
        qid: [(entries[h.subject].id, round(h.score, 9), h.identity) for h in hs]
        for (qid, _), hs in zip(world["queries"], library["sharded"])
    }
    assert {q: [(r["subject_id"], round(r["score"], 9), r["identity"]) for r in rs]
            for q, rs in _by_query(rows).items()} == want  # fmt: skip
    # The CLI's hits.tsv: every column, as it rounds them.
    code, tsv, err = _cli(capsys, "search", "--index", indexes["sharded"], world["root"] / "q.fa", "-k", "10")
    assert code == 0, err
    header, *lines = [ln.split("\t") for ln in tsv.splitlines()]
    from_endpoint = [[tsv_text(c, r) for c in header] for r in rows]  # JSON values written as the TSV writes them
    assert from_endpoint == lines
    # The index in 3 shards answers as the index built at once (tests/test_collection.py: the library's merge).
    whole = Collection.open(indexes["whole"]).entries
    assert {q: [r["subject_id"] for r in rs] for q, rs in _by_query(rows).items()} == {
        qid: [whole[h.subject].id for h in hs] for (qid, _), hs in zip(world["queries"], library["whole"])
    }


def test_bad_requests_are_refused_in_one_line(served) -> None:
    two = [{"id": "ok", "sequence": "ACGT" * 30}, {"id": "bad", "sequence": "ACGZ"}]
    status, body = post(served, {"sequences": two})
    assert status == 400 and "record 'bad'" in body["error"] and "non-nucleotide character 'Z'" in body["error"]
    assert "\n" not in body["error"]
    status, body = post(served, {"sequences": [{"id": "short", "sequence": "ACG"}]})
    assert status == 400 and "record 'short'" in body["error"] and "too short" in body["error"], body
    status, body = post(served, {"sequences": [{"id": "a", "sequence": "ACGT" * 30}], "k": 0})
    assert status == 400 and "k must be an integer" in body["error"], body
    status, body = post(served, b"{not json")
    assert status == 400 and "not JSON" in body["error"], body
    status, body = post(served, {"queries": []})
    assert status == 400 and '"sequences"' in body["error"], body


# A Ray driver in a process of its own (this one has imported Ray without the cluster's token): it connects once,
# then kills one live replica of the deployment named on each line it reads (waiting up to 90 s for one to be
# alive), answering with the node it ran on.
KILLER = """
import sys, time, ray
from ray.util.state import list_actors
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print("ready", flush=True)
for line in sys.stdin:
    cls = "ServeReplica:gene-ae:" + line.strip()
    deadline = time.monotonic() + 90  # a replica killed by an earlier test may still be restarting
    while True:
        alive = list_actors(address=sys.argv[2], filters=[("class_name", "=", cls), ("state", "=", "ALIVE")])
        if alive or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if alive:
        ray.kill(ray.get_actor(alive[0].name, namespace="serve"), no_restart=True)
    print(alive[0].node_id if alive else "none", flush=True)
"""


@pytest.fixture
def killer(cluster: Cluster):  # noqa: F811
    """kill(deployment) -> the node id of the replica killed (ray.kill, through the driver process above)."""
    proc = subprocess.Popen(
        [str(BIN / "python"), "-c", KILLER, cluster.gcs, cluster.dashboard], env=cluster.env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip

    def kill(deployment: str) -> str:
        proc.stdin.write(deployment + "\n")
        proc.stdin.flush()
        node = proc.stdout.readline().strip()
        assert node and node != "none", f"no live replica of {deployment}"
        return node

    try:
        assert proc.stdout.readline().strip() == "ready"
        yield kill
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _complete_or_flagged(status: int, body: dict, want: dict) -> str:
    """A complete answer equal to the one before the kill, or one that says which shard is missing."""
    if status == 200 and not body["partial"]:
        assert _got(body["hits"]) == want
        return "retried"
    assert body["partial"] is True and body["missing_shards"], body
    assert status == 503 or (status == 200 and body["hits"] is not None)
    return "flagged"


def test_a_killed_shard_replica_is_retried_or_flagged(served, world, killer) -> None:
    status, before = post(served, _body(world))
    assert status == 200
    want = _got(before["hits"])
    # Killed just before a request: the router may still pick the dead replica.
    killer("shard-00001")
    outcomes = [_complete_or_flagged(*post(served, _body(world)), want)]
    # Killed while requests are in flight (several at once, so that some are inside the shard's call).
    answers: list[tuple[int, dict]] = []
    threads = [threading.Thread(target=lambda: answers.append(post(served, _body(world)))) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    killer("shard-00002")
    for t in threads:
        t.join(180)
    assert len(answers) == 4
    outcomes += [_complete_or_flagged(s, b, want) for s, b in answers]
    print(f"after killed replicas: {outcomes}")
    # And the allow_partial form of a flagged answer is 200 with the other shards' hits.
    status, body = post(served, {**_body(world), "allow_partial": True})
    assert status == 200 and (body["partial"] or _got(body["hits"]) == want)


def _until_whole(served: str, world: dict, wait_s: float = 90) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        status, body = post(served, _body(world))
        if status == 200 and not body["partial"]:
            return
        assert time.monotonic() < deadline, f"no complete answer in {wait_s} s: {status} {body}"
        time.sleep(1)


def test_a_shard_that_stays_down_is_named_in_every_answer(served, world, indexes, killer) -> None:
    """shard-00002's directory moved away, then its replica killed: Serve cannot start another, so after the
    retries (2 s timeout each) the answer is 503 naming it, or with allow_partial 200 flagged partial with exactly
    the library's hits among the other shards' records."""
    encoder = Encoder.load(str(world["ckpt"]))
    embed = partial(encoder.embed_tokens, batch_size=64)
    shard = indexes["sharded"] / "shard-00002"
    collection = Collection.open(indexes["sharded"])
    collection.removed[int(collection.offsets[2]) :] = True  # shard-00002's records, as if removed
    tokens = [q.tokens for q in iter_input(world["root"] / "q.fa")]
    found = engine.search(collection, tokens, embed, engine.SearchConfig(k=10))
    want = {qid: [collection.entries.ids[h.subject] for h in hs] for (qid, _), hs in zip(world["queries"], found)}
    _until_whole(served, world)  # a replica an earlier test killed has come back before its directory moves
    away = shard.with_name("moved-away")
    shard.rename(away)
    try:
        killer("shard-00002")
        status, body = post(served, _body(world))
        assert status == 503 and body["partial"] is True and body["missing_shards"] == ["shard-00002"], body
        assert "shard-00002" in body["error"] and "allow_partial" in body["error"]
        status, body = post(served, {**_body(world), "allow_partial": True})
        assert status == 200 and body["partial"] is True and body["missing_shards"] == ["shard-00002"], body
        assert {q: [r["subject_id"] for r in rs] for q, rs in _by_query(body["hits"]).items()} == want
    finally:
        away.rename(shard)


def test_rayservice_manifest_serves_the_app_builder_from_shared_storage() -> None:
    """cluster/kuberay/rayservice.yaml: Serve's config names gene_ae.cli.serve:app, the index on the shared claim
    every pod mounts, token auth on every container, the pinned Ray."""
    import importlib

    import yaml
    from shared import constraints
    from test_cluster_config import (
        KUBERAY,
        assert_token_auth,
        assert_volumes_resolve,
        env_of,
        load_docs,
        pod_containers,
    )

    (doc,) = load_docs(KUBERAY / "rayservice.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    serve_cfg = yaml.safe_load(doc["spec"]["serveConfigV2"])
    (application,) = serve_cfg["applications"]
    module, _, attr = application["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    assert application["route_prefix"] == "/search"
    cluster_spec = doc["spec"]["rayClusterConfig"]
    assert cluster_spec["rayVersion"] == constraints()["ray"]
    for group in [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]:
        for c in pod_containers(group):
            assert_token_auth(env_of(c))
            assert any(application["args"]["index"].startswith(m["mountPath"] + "/") for m in c["volumeMounts"])
        assert_volumes_resolve(group["template"]["spec"])
