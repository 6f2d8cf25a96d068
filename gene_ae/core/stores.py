"""Tracking stores, checked before a model lookup or a run: there, answering, and every request bounded.

In core because every side that looks a model up needs it (model/encoder.py resolves models:/ URIs, the CLI and
the train driver before any work); MLflow is imported only inside the check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Every request to a tracking server is bounded (MLflow's defaults, 120 s and 7 retries with backoff, wait many
# minutes on a server that does not answer): set in the environment unless the user set them, and passed to Ray
# workers. PROBE_TIMEOUT_S bounds the one request made before any work (check_store), or the user's own
# MLFLOW_HTTP_REQUEST_TIMEOUT when set (the same bound for every request to that server).
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
PROBE_TIMEOUT_S = 10.0


def bound_requests(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment, changed in place) with HTTP_LIMITS wherever not set."""
    env = os.environ if env is None else env
    for key, value in HTTP_LIMITS.items():
        env.setdefault(key, value)
    return env


def check_store(what: str, must_exist: bool = True, writes: bool = False) -> str:
    """The registry URI, refused in one line naming it before any work: a sqlite store that is not there when
    `must_exist` (MLflow would create an empty one and then say the model is not found), a file that is not an
    SQLite database, one this user cannot write to when the work `writes` (a training run), or a server that
    does not answer within PROBE_TIMEOUT_S. `what`: the model URI or option the lookup is for."""
    import mlflow

    uris = dict.fromkeys((mlflow.get_tracking_uri(), mlflow.get_registry_uri()))
    for uri in uris:
        if uri.startswith("sqlite:///"):
            _check_sqlite(uri, Path(uri[len("sqlite:///") :]), what, must_exist, writes)
        local = _file_store(uri)
        if writes and local is not None:
            _make_folder(uri, local, what)
        if uri.startswith(("http://", "https://")):
            _check_answers(uri, what)
    return next(reversed(uris))


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file (an empty file is one too)


def _file_store(uri: str) -> Path | None:
    """The folder of a file-based store (file:///PATH or a bare path), else None."""
    if uri.startswith("file:"):
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri[len("file:") :])
    return None if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri) else Path(uri)


def _make_folder(uri: str, folder: Path, what: str) -> None:
    """The folder a store a run writes lives in, made now as MLflow would make it once Ray had started (where a
    folder that cannot be made, under /proc or a file, failed with a traceback)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{what}: cannot make the folder of the MLflow store {uri}: {exc.strerror} ({folder})") from None
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{what}: the folder of the MLflow store {uri} is not writable by this user ({folder})")


def _check_sqlite(uri: str, path: Path, what: str, must_exist: bool, writes: bool) -> None:
    if not path.is_file():
        if must_exist:
            raise FileNotFoundError(
                f"{what}: no MLflow store at {uri} (set MLFLOW_TRACKING_URI to the one that holds the model)"
            )
        if writes:
            _make_folder(uri, path.parent, what)
        return
    with open(path, "rb") as f:  # unreadable: the OSError names the file
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise ValueError(f"{what}: {uri} is not an SQLite database (an MLflow store is one); check MLFLOW_TRACKING_URI")
    if writes and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise PermissionError(f"{what}: the MLflow store {uri} is not writable by this user (the file and its "
                              "folder must be: SQLite writes a journal beside it)")  # fmt: skip


def _check_answers(uri: str, what: str) -> None:
    """Any HTTP answer from the server's /health (even an error status) will do; silence or refusal will not."""
    import urllib.error  # here: 13 ms of every command's start-up, for the commands that ask a server
    import urllib.parse
    import urllib.request

    try:
        wait = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or PROBE_TIMEOUT_S)
    except ValueError:
        wait = PROBE_TIMEOUT_S
    try:
        _ = urllib.parse.urlsplit(uri).port  # a port that is not a number: the client would fail with a traceback
    except ValueError as exc:
        raise ValueError(f"{what}: {uri} is not a tracking server address ({exc})") from None
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=wait).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(
            f"{what}: the MLflow tracking server at {uri} did not answer within {wait:g} s ({reason})"
        ) from None
