"""Run `mlflow models serve` for a model URI on loopback for the length of a `with` block."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    model_uri: str, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 180
) -> Iterator[int]:
    """Start the server, yield its port once /ping answers, stop it afterwards.

    The venv's bin goes first on PATH: `mlflow models serve` execs `uvicorn` by name.
    """
    bin_dir = Path(sys.executable).parent
    env = dict(env if env is not None else os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    port = free_port()
    cmd = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
