"""`gene-ae serve --index` on a Ray it starts itself (no RAY_ADDRESS), issue 34: it checks the CPUs its replicas
reserve before deploying (with more than the Ray cluster has free, Serve waited for ever and printed nothing; now
it is one line saying what to change), and that Ray's own ports listen on loopback only."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from shared import session_pids

from gene_ae.config import Config
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.registry.serve_model import free_port


def _two_shard_index(tmp_path: Path, cli) -> Path:
    """An index of two one-record shards, embedded with a tiny untrained model."""
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=32, window=256, downsample=4)
    ckpt = checkpoint.save(tmp_path / "ckpt", cfg, GeneAE(cfg.model))
    fasta = tmp_path / "two.fa"
    fasta.write_text(">a\nACGTTGCAAGGCTTAACCGGATTACAGATTACAGG\n>b\nTTGACCAGGATCCATGCAAGCTTGGCACTGGCCGTC\n")
    index = tmp_path / "idx"
    code, _, err = cli("gene-ae", "embed", "--model", ckpt, "--input", fasta, "--out", index, "--shard-records", "1")
    assert code == 0, err
    return index


def test_serve_index_with_more_replicas_than_cpus_is_refused_in_one_line(tmp_path: Path, cli, run_cli) -> None:
    index = _two_shard_index(tmp_path, cli)
    started = time.monotonic()
    code, out, err = run_cli("gene-ae", "serve", "--index", index, "--replicas", "50", "--port", free_port())
    ours = [line for line in err.splitlines() if line.startswith("gene-ae serve")]
    assert code == 1 and len(ours) == 1 and out == "", err[-3000:]
    assert ours[0].startswith(
        f"gene-ae serve: error: --index {index}: 2 shard deployments and the ingress, --replicas 50 each of "
        "--replica-cpus 1, need 150 CPUs; the Ray cluster has "
    ), ours[0]
    assert "lower --replicas" in ours[0] and time.monotonic() - started < 120


def _listening(pids: list[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket these processes listen on."""
    import ray  # noqa: F401  (puts Ray's bundled psutil on sys.path)

    psutil = pytest.importorskip("psutil")
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name, conns = proc.name(), proc.net_connections(kind="tcp")
        except psutil.Error:  # ended meanwhile
            continue
        found += [(name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # gRPC's dual-stack sockets: ::ffff:127.0.0.1


def test_serve_index_on_its_own_ray_listens_on_loopback_but_for_the_http_port(tmp_path: Path, cli, cli_env) -> None:
    """Before, the GCS, raylet, object manager, workers, agents and replicas' gRPC listened on every interface (Ray
    used the machine's address as its node IP); --host 0.0.0.0 still puts the HTTP proxy there, and only it."""
    index = _two_shard_index(tmp_path, cli)
    port = free_port()
    env = {k: v for k, v in cli_env.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            ["gene-ae", "serve", "--index", str(index), "--host", "0.0.0.0", "--port", str(port),
             "--replica-cpus", "0.5"],
            env=env, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        url = proc.stdout.readline().decode().strip() if ready else ""
        assert url == f"http://0.0.0.0:{port}/search", log.read_text(errors="replace")[-4000:]
        sockets = _listening(session_pids(proc.pid))
        names = {name for name, _, _ in sockets}
        assert {"gcs_server", "raylet", "ray::ProxyActor"} <= names, sockets  # the check saw Ray's processes
        assert any(name.startswith("ray::ServeReplica") for name in names), sockets
        exposed = [s for s in sockets if not _loopback(s[1])]
        assert exposed == [("ray::ProxyActor", "0.0.0.0", port)], exposed
    finally:
        proc.send_signal(signal.SIGTERM)  # the CLI deletes the app; ray.shutdown at exit stops the Ray it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for pid in session_pids(proc.pid):  # what is left of this test's own session, by PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


_LOOKUP = """
import sys, time
import ray
from gene_ae.core.local_ray import start_local_ray
start_local_ray(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
if sys.argv[1] == "hold":
    print("up", flush=True)
    time.sleep(120)
else:
    @ray.remote
    def cluster() -> str:  # what Ray's state API resolves "the" cluster to, in a worker
        from ray._private.services import canonicalize_bootstrap_address_or_die
        try:
            return canonicalize_bootstrap_address_or_die(None)
        except ConnectionError as exc:
            return f"error: {exc}"
    print(ray.get(cluster.remote()), ray.get_runtime_context().gcs_address, flush=True)
"""


def test_a_local_rays_workers_find_their_own_cluster_beside_another_ray(tmp_path: Path, cli_env) -> None:
    """Two Rays on one machine (two trainings, the suite's two processes): Ray Train's placement-group cleaner
    asks Ray's state API for "the" cluster from a worker, which stopped with "Found multiple active Ray instances"
    and printed a traceback mid-training. A local Ray's workers now know their own (core/local_ray.own_cluster)."""
    env = {**cli_env, "RAY_USAGE_STATS_ENABLED": "0"}
    other = subprocess.Popen([sys.executable, "-c", _LOOKUP, "hold"], env=env, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "up"
        found = subprocess.run([sys.executable, "-c", _LOOKUP, "look"], env=env, capture_output=True, text=True,
                               timeout=180)  # fmt: skip
        assert found.returncode == 0, found.stderr[-3000:]
        resolved, own = found.stdout.split()[-2:]
        assert resolved == own, found.stdout
    finally:
        os.killpg(other.pid, signal.SIGTERM)
        other.wait(timeout=60)
