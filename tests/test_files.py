"""shard_tools.files: sha256 of a file, atomic file and directory writes that leave no temp litter."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shard_tools.files import atomic_dir, atomic_write_bytes, sha256_file


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_sha256_file_matches_hashlib_on_a_real_file(data_dir: Path) -> None:
    path = data_dir / "bacteria" / "saureus_n315_first300kb.fasta.gz"
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_atomic_write_bytes_replaces_or_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and entries(tmp_path) == ["m.json"]
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"two" and entries(tmp_path) == ["m.json"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_atomic_dir_failure_keeps_the_old_directory_and_no_temp(error: type[BaseException], tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(error), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
        raise error
    assert (target / "a.txt").read_text() == "old"
    assert entries(tmp_path) == ["out"]


def test_atomic_dir_replaces_and_leaves_nothing_beside(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-") and entries(tmp) == []
        (tmp / "fresh.txt").write_text("y")
    assert entries(target) == ["fresh.txt"]
    assert entries(tmp_path) == ["out"]


def test_temps_of_dead_processes_are_removed_and_of_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    assert not Path(f"/proc/{dead_pid}").exists()
    for name in (f".out.tmp-{dead_pid}-abcd1234", f".out.old-{dead_pid}-abcd1234", f".out.tmp-{os.getppid()}-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "shard.tar").write_bytes(b"x")
    (tmp_path / f".other.tmp-{dead_pid}-x").mkdir()  # another output's temp: not ours to judge
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("z")
    assert entries(tmp_path) == [f".other.tmp-{dead_pid}-x", f".out.tmp-{os.getppid()}-x", "out"]
