"""Writing files and directories so that readers see the old version or the new one, never half of either.

Temporary names are hidden siblings `.NAME.tmp-PID-RANDOM` on the same file system (so a rename is atomic);
they are removed on any exception, Ctrl-C included, and a later run removes those of dead processes.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shard_tools.text import printable

_CHUNK = 1 << 20
_DEFER = {signal.SIGINT, signal.SIGTERM}


def take_signals() -> None:
    """Unblock Ctrl-C and SIGTERM in this thread: a command started with them blocked (a mask its parent held
    when it forked; tests/test_interrupts.py met one) would otherwise never see them and wait for ever."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _DEFER)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (shards are larger than memory should hold twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temps(path: str | Path) -> None:
    """Remove `.NAME.tmp-*` / `.NAME.old-*` siblings left by killed processes (SIGKILL, power loss)."""
    path = Path(path)
    for old in path.parent.glob(f".{glob.escape(path.name)}.*-*-*"):
        kind, pid = old.name[len(path.name) + 2 :].split("-", 2)[:2]
        if kind in ("tmp", "old") and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove(old)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the few renames of a commit, so Ctrl-C cannot strand a `.old-*` copy."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFER)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _commit(tmp: Path, path: Path) -> None:
    """Move tmp to path, replacing whatever is there; on failure path is as it was."""
    with _signals_deferred():
        if not path.exists() and not path.is_symlink():
            os.replace(tmp, path)
            return
        old = _sibling(path, "old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        _remove(old)


def writing_error(exc: OSError, path: str | Path, tmp: str | Path) -> OSError:
    """exc, raised while `path` was built in `tmp`, as an error naming what it was writing: the file under `path`
    (not the hidden temporary one, which is gone by the time it is read), or `path` itself when exc names no file
    (a full disk: "[Errno 28]", or numpy's "510017 requested and 440256 written"). An error naming a file
    elsewhere (the input) is returned as it is."""
    where = exc.filename
    if where is not None and not str(where).startswith(str(tmp)):
        return exc
    target = Path(path) / Path(where).relative_to(tmp) if where is not None and str(where) != str(tmp) else Path(path)
    reason = exc.strerror or str(exc)
    if exc.errno is None and "requested and" in reason:  # a short write
        reason = f"a short write ({reason}): is the disk full?"
    named = type(exc)(f"writing {target}: {reason}")
    named.errno = exc.errno
    return named


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write data to path through a temporary sibling and one rename."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise writing_error(exc, path, tmp) from exc
    except BaseException:
        _remove(tmp)
        raise


def temp_dir_for(path: str | Path) -> Path:
    """A new empty hidden sibling directory to build `path` in (stale ones of dead processes removed first)."""
    path = Path(path)
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise FileNotFoundError(f"{path}: its folder {parent} {what}")
    remove_stale_temps(path)
    tmp = _sibling(path, "tmp")
    try:
        tmp.mkdir()
    except OSError as exc:  # named as the directory asked for, not the hidden one
        raise writing_error(exc, path, tmp) from None
    return tmp


def replace_with(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temp_dir_for(path) into place, replacing what is there; on failure path is as it was."""
    _commit(Path(tmp), Path(path))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling directory; on a clean exit it replaces `path`, on any exception it goes.

    The caller decides beforehand whether an existing `path` may be replaced.
    """
    tmp = temp_dir_for(path)
    try:
        yield tmp
        replace_with(tmp, path)
    except OSError as exc:  # every I/O error names what was being written
        _remove(tmp)
        raise writing_error(exc, path, tmp) from exc
    except BaseException:
        _remove(tmp)
        raise


def check_out_dir(out: str | Path, flag: str = "--out", replaced: bool = False) -> None:
    """Refuse an output directory that could not be written: an existing file, or a nearest existing folder above
    it (created with its parents) that is a file or not writable. replaced: the directory is built beside itself
    and swapped in (gene-ae embed), so it is its parent that must be writable."""
    path, shown = Path(out), printable(str(out))
    if not str(out):
        raise ValueError(f"{flag}: empty; give a directory")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag} {shown}: is a file, not a directory")
    nearest = path if path.exists() and not replaced else path.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    writable_folder(nearest, flag, shown)


def writable_folder(folder: Path, flag: str, shown: str) -> None:
    """Refuse a folder a command could not write into, naming the option (`flag`) and the path as given (`shown`)."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{flag} {shown}: {printable(str(folder))} is a file, not a folder")
    try:  # tried, not os.access: that says yes to root on a read-only mount
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        why = "on a read-only file system" if exc.errno == errno.EROFS else "not writable"
        raise PermissionError(f"{flag} {shown}: folder {printable(str(folder))} is {why}") from None
