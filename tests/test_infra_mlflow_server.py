"""The team MLflow server, for real: PostgreSQL from Debian's packages, MLflow's basic-auth app, training
over HTTP, and serving the production encoder from it.

The server is infra/mlflow/entrypoint.sh run with the `command` and `environment` of the mlflow service
in infra/mlflow/compose.yaml; only what is specific to this machine is swapped: the database host and
port, a local directory instead of MinIO for artifacts, fresh passwords, and a free port. The model
server runs the `command` of the compose `serve` service. PostgreSQL runs from a fresh initdb in a
temporary directory, as the `postgres` user when the tests run as root, and the databases are made
with the same SQL file the compose postgres service runs. Everything started here is stopped here:
PostgreSQL with `pg_ctl stop` on its own data directory, the servers by their process sessions.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from shared import TINY_TRAIN_ARGS, session_pids

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE = REPO / "infra/mlflow/compose.yaml"


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server bin directory: Debian's /usr/lib/postgresql/N/bin, else initdb on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]), reverse=True)
    if found:
        return found[0].parent
    which = shutil.which("initdb")
    return Path(which).parent if which and shutil.which("pg_ctl") else None


PG_BIN = postgres_bin()
pytestmark = pytest.mark.skipif(
    PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_session(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the session `proc` leads (it was started with start_new_session), SIGKILL what remains."""
    sid = proc.pid
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def http(method: str, url: str, auth: tuple[str, str] | None = None, body=None, headers=None) -> tuple[int, str]:
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{proc.args} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-5000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not up after {timeout:.0f} s:\n{log.read_text(errors='replace')[-5000:]}")


def compose_service(name: str) -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"][name]


def substitute(args: list[str], values: dict[str, str]) -> list[str]:
    """Replace the value after each flag in `values`; expand ${VAR:-default} to its default."""
    out = [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a) for a in args]
    for flag, value in values.items():
        i = out.index(flag)
        out[i + 1] = value
    return out


@dataclass
class Postgres:
    port: int
    password: str
    root: Path

    def uri(self, database: str) -> str:
        password = urllib.parse.quote(self.password, safe="")
        return f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def postgres() -> Postgres:
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="gae-pg-", dir="/tmp"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    password = f"p@ss%w0rd-{secrets.token_hex(4)}"  # '@' and '%' must survive URL-encoding and the auth ini

    def run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{cmd[0]}: {proc.stdout}\n{proc.stderr}"
        return proc

    run(str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")  # fmt: skip
    started = False
    try:
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
        run(str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", options, "start")  # fmt: skip
        started = True
        psql = [str(PG_BIN / "psql"), "-h", str(root), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
        run(*psql, "-c", f"CREATE ROLE mlflow LOGIN PASSWORD '{password}'", "-c", "CREATE DATABASE mlflow OWNER mlflow")
        # The same script the compose postgres service runs on first start.
        sql = root / "10-mlflow-auth-db.sql"
        shutil.copy(REPO / "infra/mlflow/initdb/10-mlflow-auth-db.sql", sql)
        os.chmod(sql, 0o644)
        run(*psql, "-d", "mlflow", "-f", str(sql))
        yield Postgres(port, password, root)
    finally:
        if started:
            subprocess.run(
                [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Server:
    url: str
    admin: tuple[str, str]
    artifacts: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Server:
    spec = compose_service("mlflow")
    env_spec = spec["environment"]
    work = tmp_path_factory.mktemp("mlflow-server")
    artifacts = work / "artifacts"
    admin = (env_spec["MLFLOW_AUTH_ADMIN_USERNAME"], f"admin-{secrets.token_hex(8)}")
    # The compose file's database URIs use the driver installed here (SQLAlchemy 2.1 maps a bare
    # postgresql:// to psycopg 3, which is not installed); keep them that way.
    for key in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
        assert env_spec[key].startswith("postgresql+psycopg2://"), env_spec[key]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update({k: str(v) for k, v in env_spec.items() if not k.startswith("AWS_") and "${" not in str(v)})
    env.pop("MLFLOW_S3_ENDPOINT_URL")  # MinIO is not available here: artifacts go to a local directory
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_BACKEND_STORE_URI=postgres.uri("mlflow"),
        MLFLOW_AUTH_DATABASE_URI=postgres.uri("mlflow_auth"),
        MLFLOW_ARTIFACTS_DESTINATION=artifacts.as_uri(),
        MLFLOW_AUTH_ADMIN_PASSWORD=admin[1],
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_AUTH_CONFIG_DIR=str(work / "auth"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert env["MLFLOW_AUTH_DEFAULT_PERMISSION"] == "READ"
    port = free_port()
    args = substitute(spec["command"], {"--host": "127.0.0.1", "--port": str(port), "--workers": "1"})
    log = work / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["sh", str(REPO / "infra/mlflow/entrypoint.sh"), *args],
            env=env,
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc, log, timeout=300)
        yield Server(url, admin, artifacts, env)
    finally:
        stop_session(proc)


@pytest.fixture(scope="module")
def users(server: Server) -> dict[str, tuple[str, str]]:
    made = {}
    for name in ("trainer", "reader"):
        password = f"{name}-{secrets.token_hex(8)}"
        status, text = http(
            "POST",
            f"{server.url}/api/2.0/mlflow/users/create",
            server.admin,
            {"username": name, "password": password},
        )
        assert status == 200, text
        assert json.loads(text)["user"]["is_admin"] is False
        made[name] = (name, password)
    return made


def client_env(server: Server, user: tuple[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_TRACKING_USERNAME=user[0],
        MLFLOW_TRACKING_PASSWORD=user[1],
        MLFLOW_DISABLE_TELEMETRY="true",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def test_server_requires_authentication(server: Server) -> None:
    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert http("GET", f"{server.url}/health")[0] == 200  # probes need no credentials
    assert http("GET", search)[0] == 401
    assert http("GET", search, (server.admin[0], "wrong-password-123"))[0] == 401
    status, text = http("GET", search, server.admin)
    assert status == 200, text
    assert [e["name"] for e in json.loads(text)["experiments"]] == ["Default"]
    # --allowed-hosts from the compose file: a Host header outside it is refused (DNS-rebinding guard).
    assert http("GET", search, server.admin, headers={"Host": "attacker.example:5000"})[0] == 403


def test_training_logs_over_http_and_registers(
    server: Server, users: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    shards = tmp_path / "shards"
    subprocess.run(
        [str(BIN / "shard-fasta"), "--quiet", "--label-column", "class",
         str(REPO / "data/genefam/chimp_sample.tsv.gz"), str(shards)],
        check=True,
        timeout=300,
    )  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gene_ae.train", "--data", str(shards), "--storage", str(tmp_path / "runs"),
         "--workers", "1", "--name", "over-http", "--alias", "production", *TINY_TRAIN_ARGS],
        env=client_env(server, users["trainer"]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"training over HTTP: {time.monotonic() - started:.0f} s")
    assert not (tmp_path / "mlflow.db").exists()  # nothing fell back to a local store

    reader = MlflowClient(server.url)
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = users["reader"]
    try:
        version = reader.get_model_version_by_alias("gene-ae-encoder", "production")
        assert str(version.version) == "1"
        run = reader.get_run(version.run_id)
        assert run.info.status == "FINISHED"
        assert 0.0 <= run.data.metrics["val_accuracy"] <= 1.0
        assert run.data.metrics["val_bits_per_base"] > 0
        assert run.data.params["model.vector_dim"] == "32"
        assert run.data.tags["data.path"] == str(shards.resolve())
        steps = sorted(m.step for m in reader.get_metric_history(run.info.run_id, "loss"))
        assert steps == [2, 4, 6]
        # Artifacts went through the server (proxied) into its artifact destination.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert "loss_curve.png" in {a.path for a in reader.list_artifacts(run.info.run_id)}
        assert list(server.artifacts.rglob("loss_curve.png"))
        assert list(server.artifacts.rglob("MLmodel"))
        # default_permission READ: the reader sees everything and changes nothing.
        with pytest.raises(MlflowException) as err:
            reader.set_tag(run.info.run_id, "tampered", "yes")
        assert "PERMISSION_DENIED" in str(err.value) or "403" in str(err.value)
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


def test_serve_production_alias(server: Server, users: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    """The compose `serve` command (the k8s Deployment runs the same) serves models:/gene-ae-encoder@production."""
    status, text = http(
        "GET",
        f"{server.url}/api/2.0/mlflow/registered-models/alias?name=gene-ae-encoder&alias=production",
        users["reader"],
    )
    if status == 404:
        pytest.skip("no production model: test_training_logs_over_http_and_registers did not run or failed")
    assert status == 200, text

    port = free_port()
    cmd = substitute(compose_service("serve")["command"], {"--host": "127.0.0.1", "--port": str(port)})
    assert cmd[:3] == ["mlflow", "models", "serve"]
    env = client_env(server, users["reader"])
    log = tmp_path / "serve.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), *cmd[1:]],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, log, timeout=300)
        print(f"model server up: {time.monotonic() - started:.0f} s")
        seqs = ["ACGTACGTAAACCCGGGTTTACGATCGATCGA" * 4, "GGGCCCAAATTTACGTNNACGT" * 3, "ATATATATCGCGCGCG" * 5]
        status, text = http(
            "POST",
            f"http://127.0.0.1:{port}/invocations",
            body={"dataframe_split": {"columns": ["sequence"], "data": [[s] for s in seqs]}},
        )
        assert status == 200, text
        emb = json.loads(text)["predictions"]
        assert len(emb) == 3 and all(len(row) == 32 for row in emb)
        assert all(math.isfinite(x) for row in emb for x in row)
        assert emb[0] != emb[1] != emb[2]
        status, text = http(
            "POST",
            f"http://127.0.0.1:{port}/invocations",
            body={"dataframe_split": {"columns": ["sequence"], "data": [["ACGT-not-dna!"]]}},
        )
        assert status == 400, text
    finally:
        stop_session(proc)
