"""`mlflow models serve` for a model URI: in the foreground (`gene-ae serve`) or for a `with` block (tests).

`mlflow models serve` execs `uvicorn` by name, so it fails with exit 127 unless the venv's bin is on PATH;
both ways run it with this interpreter's bin directory first on PATH, so an unactivated venv serves too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
    """Start the server on a free loopback port, yield the port once /ping answers, stop it afterwards."""
    port = free_port()
    server = subprocess.Popen(
        serve_command(model_uri, "127.0.0.1", port),
        cwd=cwd,
        env=serve_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    server.kill()
                    raise RuntimeError(f"mlflow models serve did not start: {server.stderr.read()[-2000:]}") from None
                time.sleep(1)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
