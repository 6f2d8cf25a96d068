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


# --------------------------------------------------------------- every I/O error names its path (issue 34)
FULL = Path("/dev/full")  # every write fails with ENOSPC: a real full disk, without mounting one
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full")


def _full_disk_error(tmp_path: Path, write) -> OSError:
    """The error `write(file)` raises inside atomic_dir(tmp_path / "idx") on a file there that is /dev/full."""
    with pytest.raises(OSError) as exc, atomic_dir(tmp_path / "idx") as d:
        (d / "part.bin").symlink_to(FULL)
        with open(d / "part.bin", "wb") as f:
            write(f)
    assert not (tmp_path / "idx").exists() and list(tmp_path.iterdir()) == []  # nothing partial left
    return exc.value


@needs_dev_full
def test_a_full_disk_names_the_directory_being_written(tmp_path: Path) -> None:
    err = _full_disk_error(tmp_path, lambda f: f.write(b"x" * (1 << 20)))
    assert str(err) == f"writing {tmp_path / 'idx'}: No space left on device" and err.errno == 28, err


@needs_dev_full
def test_numpys_short_write_names_the_directory_and_says_what_it_means(tmp_path: Path) -> None:
    """The message the issue saw ("510017 requested and 440256 written", no path) from np.save on a full disk."""
    import numpy as np

    err = _full_disk_error(tmp_path, lambda f: np.arange(1 << 18, dtype=np.float32).tofile(f))
    assert str(err).startswith(f"writing {tmp_path / 'idx'}: a short write (262144 requested and "), err
    assert str(err).endswith("): is the disk full?"), err


@needs_dev_full
def test_a_failed_faiss_write_names_the_file_under_the_final_directory(tmp_path: Path) -> None:
    import faiss
    import numpy as np

    from gene_ae.index.vectors import write_faiss

    index = faiss.IndexFlatIP(8)
    index.add(np.ones((4096, 8), np.float32))
    with pytest.raises(OSError) as exc, atomic_dir(tmp_path / "idx") as d:
        (d / "index.faiss").symlink_to(FULL)
        write_faiss(index, d / "index.faiss")
    assert str(exc.value) == f"writing {tmp_path / 'idx' / 'index.faiss'}: No space left on device", exc.value


def test_an_error_naming_another_file_is_left_as_it_is(tmp_path: Path) -> None:
    """An input that cannot be read while the output is built is named as the input, not as the output."""
    with pytest.raises(FileNotFoundError) as exc, atomic_dir(tmp_path / "idx"):
        open(tmp_path / "no-such-input")
    assert exc.value.filename == str(tmp_path / "no-such-input")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_an_output_folder_that_cannot_be_made_is_named_not_its_hidden_temporary() -> None:
    """/proc exists but takes no new folders: the error named `.NAME.tmp-PID-RANDOM`, which the user never asked for."""
    with pytest.raises(OSError) as exc, atomic_dir("/proc/gene-ae-out"):
        pass
    assert str(exc.value).startswith("writing /proc/gene-ae-out: ") and ".tmp-" not in str(exc.value), exc.value
