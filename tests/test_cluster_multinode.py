"""A real two-node Ray cluster on this machine, with Ray 2.60's token authentication on.

`ray start --head` and `ray start --address` run as two nodes (separate raylets, temp dirs, ports and one
CPU each, so the two training workers must land on different nodes); training goes in through
cluster/submit.py (`ray job submit`); the MLflow run and the registered model version it produced are
checked afterwards. Only the processes these tests start are stopped: each `ray start --block` runs in
its own session, and cleanup signals that session's processes by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from shared import TINY_TRAIN_ARGS, session_pids

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(not (BIN / "ray").exists(), reason="the ray CLI is not installed next to python")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RayNode:
    """`ray start --block` in a session of its own; stop() ends exactly that session's processes."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_started(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(
            f"ray start ({self.name}) did not come up:\n{self.log.read_text(errors='replace')[-3000:]}"
        )

    def stop(self) -> list[int]:
        """SIGTERM `ray start` (it stops its node), then SIGKILL whatever of its session is left."""
        sid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while (left := session_pids(sid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return left


@dataclass
class Cluster:
    env: dict[str, str]
    token: str
    dashboard: str
    gcs: str
    root: Path
    head: RayNode
    worker: RayNode


def ray_cli(cluster: Cluster, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [str(BIN / "ray"), *args],
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def job_output(proc: subprocess.CompletedProcess) -> str:
    """The job's own output, without the Ray CLI's packaging chatter."""
    text = proc.stdout + proc.stderr
    return "\n".join(ln for ln in text.splitlines() if "packaging.py" not in ln and "working_dir.py" not in ln)[-8000:]


def alive_nodes(cluster: Cluster) -> list[dict]:
    out = ray_cli(cluster, "list", "nodes", "--address", cluster.dashboard, "--format", "json")
    assert out.returncode == 0, out.stderr
    return [n for n in json.loads(out.stdout) if n["state"] == "ALIVE"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cluster-shards") / "genefam"
    subprocess.run(
        [str(BIN / "shard-fasta"), "--quiet", "--label-column", "class", str(REPO / "data/genefam/chimp_sample.tsv.gz"),
         str(out)],
        check=True,
        timeout=300,
    )  # fmt: skip
    return out.resolve()


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    root = Path(tempfile.mkdtemp(prefix="gae-", dir="/tmp"))  # short: Ray's AF_UNIX socket paths live below it
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    p = free_ports(15)
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--object-store-memory",
        "100000000",
    ]
    head = RayNode(
        "head",
        ["--head", "--port", str(p[0]), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(p[1]), "--dashboard-agent-listen-port", str(p[2]),
         "--dashboard-agent-grpc-port", str(p[3]), "--runtime-env-agent-port", str(p[4]),
         "--metrics-export-port", str(p[5]), "--node-manager-port", str(p[6]),
         "--object-manager-port", str(p[7]), "--ray-client-server-port", str(p[8]),
         "--temp-dir", str(root / "head"), *common],
        env,
        root / "head.log",
    )  # fmt: skip
    nodes: list[RayNode] = [head]
    try:
        head.wait_started()
        # Ray waits a fixed 30 s for a new raylet to register with the GCS (node.py's raylet_start_wait_time_s);
        # on a loaded 2-core CI machine the worker has missed it once. A node that failed is stopped and a fresh
        # one (new ports, new temp dir) tried; the third failure fails the fixture with every log.
        failures: list[str] = []
        for attempt in range(3):
            q = p[9:] if attempt == 0 else free_ports(6)
            worker = RayNode(
                "worker",
                ["--address", f"127.0.0.1:{p[0]}", "--dashboard-agent-listen-port", str(q[0]),
                 "--dashboard-agent-grpc-port", str(q[1]), "--runtime-env-agent-port", str(q[2]),
                 "--metrics-export-port", str(q[3]), "--node-manager-port", str(q[4]),
                 "--object-manager-port", str(q[5]), "--temp-dir", str(root / f"worker{attempt}"), *common],
                env,
                root / f"worker{attempt}.log",
            )  # fmt: skip
            nodes.insert(0, worker)
            try:
                worker.wait_started()
                break
            except AssertionError as err:
                failures.append(str(err))
                worker.stop()
                nodes.remove(worker)
        else:
            raise AssertionError("\n\n".join(failures))
        c = Cluster(env, token, f"http://127.0.0.1:{p[1]}", f"127.0.0.1:{p[0]}", root, head, worker)
        deadline = time.monotonic() + 60
        while len(alive_nodes(c)) < 2:
            assert time.monotonic() < deadline, "the second node never registered"
            time.sleep(1)
        yield c
    finally:
        leftovers = {node.name: node.stop() for node in nodes}  # worker first, then head
        shutil.rmtree(root, ignore_errors=True)
    if any(leftovers.values()):  # killed all the same; worth knowing if `ray start` stops leaving stragglers
        warnings.warn(f"Ray processes needed SIGKILL after SIGTERM: {leftovers}", stacklevel=1)


def test_token_auth_is_enforced(cluster: Cluster) -> None:
    """Ray 2.60 token auth: the job API rejects requests without the token, or with a wrong one."""
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{cluster.dashboard}/api/jobs/", timeout=30)
    assert err.value.code == 401

    req = urllib.request.Request(f"{cluster.dashboard}/api/jobs/", headers={"Authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 403

    req = urllib.request.Request(f"{cluster.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {cluster.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200

    bad = ray_cli(
        cluster, "job", "list", "--address", cluster.dashboard, env={**cluster.env, "RAY_AUTH_TOKEN": "x" * 64}
    )
    assert bad.returncode != 0
    assert "token" in (bad.stdout + bad.stderr).lower()

    # The token can also come from a file, as cluster/submit.py --token-file passes it.
    token_file = cluster.root / "token"
    token_file.write_text(cluster.token)
    env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_TOKEN"}
    ok = ray_cli(
        cluster, "job", "list", "--address", cluster.dashboard, env={**env, "RAY_AUTH_TOKEN_PATH": str(token_file)}
    )
    assert ok.returncode == 0, ok.stderr


def test_two_nodes_with_one_cpu_each(cluster: Cluster) -> None:
    nodes = alive_nodes(cluster)
    assert len(nodes) == 2
    assert sorted(n["is_head_node"] for n in nodes) == [False, True]
    assert all(n["resources_total"].get("CPU") == 1 for n in nodes)


def test_submit_training_across_two_nodes(cluster: Cluster, shards: Path) -> None:
    from mlflow import MlflowClient

    db = cluster.root / "mlflow.db"
    uri = f"sqlite:///{db}"
    experiment = "gene-ae-cluster-test"
    model = "gene-ae-encoder-cluster-test"
    # A sqlite store puts a new experiment's artifacts in ./mlruns of the driver's working directory, which
    # under `ray job submit` is temporary: create the experiment with an absolute artifact location first.
    client = MlflowClient(uri)
    client.create_experiment(experiment, artifact_location=(cluster.root / "artifacts").as_uri())

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "cluster/submit.py"), "--address", cluster.dashboard, "--data", str(shards),
         "--storage", str(cluster.root / "runs"), "--tracking-uri", uri, "--submission-id", "gene-ae-multinode",
         "--", "--workers", "2", "--name", "multinode", "--experiment", experiment, "--register", model,
         "--alias", "production", *TINY_TRAIN_ARGS],
        env=cluster.env,
        cwd=cluster.root,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert proc.returncode == 0, job_output(proc)
    assert "Job 'gene-ae-multinode' succeeded" in proc.stdout + proc.stderr
    assert f"models:/{model}/1" in proc.stdout
    print(f"multi-node job: {seconds:.0f} s")

    # The registered version, its alias, and the run that produced it.
    version = client.get_model_version_by_alias(model, "production")
    assert str(version.version) == "1"
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name(experiment).experiment_id
    assert 0.0 <= run.data.metrics["val_accuracy"] <= 1.0
    assert run.data.metrics["val_bits_per_base"] > 0
    assert run.data.params["train.workers"] == "2"
    assert run.data.params["data.path"] == str(shards)
    assert run.data.tags["data.path"] == str(shards)
    assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)] == [
        2,
        4,
        6,
    ]
    assert version.tags["run_id"] == run.info.run_id
    assert float(version.tags["val_accuracy"]) == pytest.approx(run.data.metrics["val_accuracy"], abs=1e-4)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "loss_curve.png" in artifacts
    # Checkpoints went to the absolute storage path, not into the job's temporary working directory.
    assert list((cluster.root / "runs" / "multinode").glob("checkpoint_*"))

    # The two DDP workers ran on the two different nodes.
    out = ray_cli(
        cluster, "list", "actors", "--address", cluster.dashboard, "--filter", "class_name=RayTrainWorker",
        "--detail", "--format", "json", "--limit", "1000",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    workers = json.loads(out.stdout)
    assert len(workers) == 2, workers
    assert len({w["node_id"] for w in workers}) == 2
    assert {w["node_id"] for w in workers} == {n["node_id"] for n in alive_nodes(cluster)}


def test_stage_shards_onto_every_node(cluster: Cluster, shards: Path) -> None:
    """cluster/stage_shards.py through pyarrow.fs (file:// here; s3:// and gs:// take the same path)."""
    dest = cluster.root / "staged" / "genefam"
    proc = ray_cli(
        cluster, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(REPO),
        "--runtime-env", str(REPO / "cluster/runtime_env.yaml"), "--",
        "python", "cluster/stage_shards.py", shards.as_uri(), str(dest), "--workers", "2", "--timeout", "60",
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, job_output(proc)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith('{"staged"'))
    staged = json.loads(line)["staged"]
    assert {s["node_id"] for s in staged} == {n["node_id"] for n in alive_nodes(cluster)}
    # Both nodes share this machine's disk: one copies, the other finds an identical copy in place.
    assert sorted(s["status"] for s in staged) == ["copied", "present"]
    assert all(s["dest"] == str(dest) for s in staged)
    assert (dest / "manifest.json").read_bytes() == (shards / "manifest.json").read_bytes()
    verify = subprocess.run([str(BIN / "shard-verify"), str(dest)], capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stderr
    assert not list(dest.parent.glob(".genefam.tmp-*"))


def test_job_env_may_repeat_what_gene_ae_train_sets(cluster: Cluster, shards: Path) -> None:
    """A job env that already sets MLFLOW_DISABLE_TELEMETRY no longer stops Ray from starting the driver; without
    a tracking server the driver then refuses to log to a sqlite file in the job's throwaway directory."""
    proc = ray_cli(
        cluster, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps({"env_vars": {"MLFLOW_DISABLE_TELEMETRY": "true"}}), "--",
        "python", "-m", "gene_ae.train", "--data", str(shards), "--storage", str(cluster.root / "runs"),
        timeout=600,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Failed to merge the Job's runtime env" not in out
    assert "on a cluster set MLFLOW_TRACKING_URI" in out
