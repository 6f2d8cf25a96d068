"""`mlflow models serve` for a model URI: in the foreground (`gene-ae serve`) or for a `with` block (tests).

`mlflow models serve` execs `uvicorn` by name, so it fails with exit 127 unless the venv's bin is on PATH;
both ways run it with this interpreter's bin directory first on PATH, so an unactivated venv serves too.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

DEFAULT_PORT = 5001


def serve_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the venv's bin directory first on PATH."""
    env = dict(env if env is not None else os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


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
