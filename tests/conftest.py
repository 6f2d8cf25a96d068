"""Shared fixtures: the bundled data folder and a runner for the real console scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
