"""`mlflow models serve` for a model URI: in the foreground (`gene-ae serve`) or for a `with` block (tests).

`mlflow models serve` execs `uvicorn` by name, so it fails with exit 127 unless the venv's bin is on PATH;
both ways run it with this interpreter's bin directory first on PATH, so an unactivated venv serves too.
`check_listen` and `check_model` refuse, in one line and before anything loads, what would make it fail late.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from gene_ae.registry.tracking import bound_requests

DEFAULT_PORT = 5001
# What `mlflow models serve` (check_model) takes: a training checkpoint directory is not an MLflow model.
SERVED_MODEL_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or an MLflow model directory"


def serve_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the venv's bin directory first on PATH."""
    env = dict(env if env is not None else os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return bound_requests(env)


def serve_command(model_uri: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> list[str]:
    """The venv's own `mlflow models serve` for model_uri, in this environment (no conda, no virtualenv)."""
    mlflow = Path(sys.executable).parent / "mlflow"
    return [
        str(mlflow),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
    ]


def check_listen(host: str, port: int) -> None:
    """Refuse a --host/--port the server could not listen on (busy, not this machine's, privileged), by binding a
    socket to it as uvicorn will (SO_REUSEADDR) and closing it again."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]  # fmt: skip
    except socket.gaierror as exc:
        raise ValueError(f"--host {host}: not a known host name or address ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            why = {
                errno.EADDRINUSE: "already in use (another server listens there): pick another --port or stop it",
                errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
                errno.EACCES: "permission denied (ports below 1024 need root)",
            }.get(exc.errno, exc.strerror)
            raise OSError(f"--port {port} on {host}: {why}") from None


def check_model(uri: str) -> None:
    """Refuse a model URI that `mlflow models serve` could not find, before it starts: a registered model, version,
    alias or logged model the registry does not hold, a run it does not know, a local path that is not an MLflow
    model directory. Other schemes (s3://, ...) are left to MLflow."""
    if uri.startswith("models:/"):
        _check_registered(uri)
    elif uri.startswith("runs:/"):
        run_id = uri[len("runs:/") :].lstrip("/").split("/", 1)[0]
        if not run_id:
            raise ValueError(f"{uri}: no run id; give runs:/RUN_ID/encoder")
        _registry_lookup(uri, lambda client: client.get_run(run_id), f"no run {run_id!r}")
    elif uri.startswith("file:") or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri):
        local = Path(uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:"))
        if not local.exists():
            raise FileNotFoundError(f"{uri}: no such file or directory")
        if not (local / "MLmodel").is_file():
            raise ValueError(
                f"{uri}: not an MLflow model directory (no MLmodel file); serve models:/NAME@ALIAS, "
                "models:/NAME/VERSION or runs:/ID/encoder (an index built with a checkpoint serves with --index)"
            )
        _check_mlmodel(uri, local / "MLmodel")


def _check_mlmodel(uri: str, path: Path) -> None:
    """An MLmodel file `mlflow models serve` can serve: YAML describing a python_function flavor (a damaged or
    foreign one made it fail with a traceback after it started)."""
    from mlflow.models import Model

    try:
        flavors = Model.load(path).flavors
    except Exception as exc:  # yaml's, MLflow's, or a TypeError/AttributeError on YAML of another shape
        raise ValueError(f"{path}: not a readable MLmodel ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(flavors, dict) or "python_function" not in flavors:
        raise ValueError(f"{uri}: its MLmodel ({path}) describes no python_function flavor: not a model "
                         "`mlflow models serve` can serve (damaged, or another tool's)")  # fmt: skip


def _check_registered(uri: str) -> None:
    """models:/NAME@ALIAS, models:/NAME/VERSION (or /latest, /STAGE) or models:/MODEL_ID, as MLflow parses them."""
    parts = uri[len("models:/") :].lstrip("/").split("/")
    if len(parts) > 2 or not parts[0].strip() or (len(parts) == 2 and not parts[1].strip()):
        raise ValueError(f"{uri}: not a model URI; give models:/NAME@ALIAS or models:/NAME/VERSION")
    if len(parts) == 1 and "@" not in parts[0]:
        _registry_lookup(uri, lambda client: client.get_logged_model(parts[0]), f"no logged model {parts[0]!r}")
        return
    name, alias = parts[0].rsplit("@", 1) if len(parts) == 1 else (parts[0], "")
    if len(parts) == 1 and not alias.strip():
        raise ValueError(f"{uri}: empty alias; give models:/{name}@ALIAS")
    model = _registry_lookup(uri, lambda client: client.get_registered_model(name), f"no registered model {name!r}")
    if alias and alias not in model.aliases:
        held = ", ".join(f"@{a} -> version {v}" for a, v in sorted(model.aliases.items())) or "none"
        raise ValueError(f"{uri}: model {name!r} has no alias {alias!r} (its aliases: {held}); set it with "
                         f"gene-ae promote --name {name} --version N --alias {alias}")  # fmt: skip
    if len(parts) == 2 and parts[1].isdigit():
        _registry_lookup(
            uri, lambda client: client.get_model_version(name, parts[1]), f"model {name!r} has no version {parts[1]}"
        )


def _registry_lookup(uri: str, get, missing: str):
    """get(MlflowClient()), with MLflow's 'does not exist' turned into a one-line error naming the registry. A
    registry that is not there or does not answer is refused first (tracking.check_store)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from gene_ae.registry.tracking import check_store

    registry = check_store(uri)
    try:
        return get(mlflow.MlflowClient())
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise
        raise ValueError(f"{uri}: {missing} in the registry at {registry}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    model_uri: str, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 180
) -> Iterator[int]:
    """Serve model_uri on a free loopback port; yield the port once /ping answers, stop the server after."""
    port = free_port()
    with running(serve_command(model_uri, "127.0.0.1", port), port, serve_env(env), cwd, timeout):
        yield port


@contextmanager
def running(
    cmd: list[str], port: int, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 180
) -> Iterator[subprocess.Popen]:
    """Run a server command in its own process group until its /ping on 127.0.0.1:port answers; afterwards
    stop the whole group (mlflow starts uvicorn through a shell, which must not outlive it)."""
    server = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except (OSError, http.client.HTTPException):  # not up yet, or a half-started server's reply
                if server.poll() is not None or time.time() > deadline:
                    _stop(server, signal.SIGKILL)
                    raise RuntimeError(f"{cmd[0]} did not start: {server.stderr.read()[-2000:]}") from None
                time.sleep(1)
        yield server
    finally:
        _stop(server, signal.SIGTERM)


def _stop(server: subprocess.Popen, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(server.pid, sig)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
