"""Shared fixtures: the bundled data folder, a runner for the real console scripts, and one for their `main` in
this process (error cases and most runs: no interpreter start-up, same arguments, exit status and output)."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# The files that take longest, run first: with two test processes (make test, one file each at a time) the file
# that starts last sets the end, so the long ones start early and the short ones fill in around them.
LONGEST_FIRST = ("test_train.py", "test_cluster_multinode.py", "test_serve_index.py", "test_serving.py",
                 "test_infra_mlflow_server.py", "test_demo_features.py", "test_serve_checks.py")  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True, scope="module")
def _process_state_kept() -> Iterator[None]:
    """Each test file leaves its process as it found it: environment, working directory and MLflow's process-wide
    settings (tracking URI, active experiment). With two test processes a file runs after whichever others its
    process ran before, in an order that varies from run to run; one test's MLflow experiment id, left active,
    made every test of a later file fail to start a run ("No Experiment with id=1")."""
    env, cwd = dict(os.environ), os.getcwd()
    yield
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:  # only if the file imported MLflow
        fluent._active_experiment_id = None
        sys.modules["mlflow"].set_tracking_uri(None)


def _bin_dir() -> Path:
    """The folder holding the installed console scripts (the venv's bin when run with .venv/bin/python)."""
    here = Path(sys.executable).parent
    if (here / "shard-fasta").exists():
        return here
    found = shutil.which("shard-fasta")
    if found is None:
        pytest.skip("shard-fasta console script is not installed (pip install -e .)")
    return Path(found).parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The bundled real data slices (see data/README.md)."""
    return REPO / "data"


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment for running the console scripts: the venv's bin first on PATH, no colour or pager."""
    env = dict(os.environ)
    env["PATH"] = f"{_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="session")
def run_cli(cli_env: dict[str, str]) -> Callable[..., tuple[int, str, str]]:
    """run_cli("shard-fasta", arg, ..., cwd=None, timeout=120) -> (returncode, stdout, stderr)."""

    def run(*args: str | Path, cwd: str | Path | None = None, timeout: float = 120) -> tuple[int, str, str]:
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run


def _main_of(command: str) -> Callable[[list[str]], int | None]:
    """The function a console script calls, taking argv (imported late: gene-ae pulls in torch and MLflow)."""
    if command == "gene-ae":
        from gene_ae.cli import main

        return main
    from shard_tools.cli import shard_fasta_main, shard_verify_main

    return {"shard-fasta": shard_fasta_main, "shard-verify": shard_verify_main}[command]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """cli("shard-fasta" | "shard-verify" | "gene-ae", arg, ..., stdin=None) -> (exit status, stdout, stderr), run
    in this process: the same call shape as run_cli. argparse's exits (usage errors, --help) and gene-ae's
    sys.exit become the exit status; stdin (bytes or text) replaces standard input for the call."""

    def run(command: str, *args: str | Path, stdin: bytes | str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what the test printed before
        real_stdin = sys.stdin
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode() if isinstance(stdin, str) else stdin))
        try:
            code = _main_of(command)([str(a) for a in args])
        except SystemExit as done:
            code = done.code
        finally:
            sys.stdin = real_stdin
        out, err = capsys.readouterr()
        if code is None:
            code = 0
        elif not isinstance(code, int):  # sys.exit("message") prints it to stderr and exits 1
            code, err = 1, f"{err}{code}\n"
        return code, out, err

    return run


@pytest.fixture
def terminal():
    """A real pseudo-terminal (120 columns): yields (its file, a function returning what it was sent)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    tty = os.fdopen(slave, "w", buffering=1)
    sent: list[bytes] = []

    def drain() -> None:  # keep the pty from filling up while the command runs
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the slave side closed
                return
            if not data:
                return
            sent.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    def text() -> str:
        tty.flush()
        return b"".join(sent).decode(errors="replace")

    yield tty, text
    tty.close()
    reader.join(timeout=10)
    os.close(master)
