#!/usr/bin/env python3
"""Submit `python -m gene_ae.train` to any Ray cluster with `ray job submit`.

    python cluster/submit.py --address http://HEAD:8265 \\
        --data /shared/shards/genefam --storage s3://my-bucket/gene-ae/runs \\
        --tracking-uri https://mlflow.example.org -- --workers 4 --gpu --steps 1200 --alias production

Everything after `--` goes to `gene_ae.train` unchanged. This script only assembles and runs

    ray job submit --address A --working-dir . --runtime-env-json J --submission-id ID -- python -m gene_ae.train ...

from the repository root, where J is the runtime environment file (cluster/runtime_env.yaml: the image
already holds the dependencies; cluster/runtime_env.pip.yaml: pip installs them) with the MLflow tracking
URI and any --env variables added. Rules it enforces, because a job runs in a temporary working
directory on the head node, not where you typed the command:

* --data is an absolute path that exists on every node (shared filesystem, or baked into the image), or
  an s3:// gs:// file:// URI, which is first copied to the same local path on every node by
  cluster/stage_shards.py (pyarrow.fs) and trained on from there.
* --storage (Ray checkpoints) is an absolute path on a filesystem all nodes share, or an s3:// gs:// URI.
* the MLflow tracking URI is explicit (--tracking-uri or MLFLOW_TRACKING_URI) and not a relative path.

Token authentication (Ray 2.60): when the cluster runs with RAY_AUTH_MODE=token the ray CLI needs
RAY_AUTH_MODE=token plus the token, from RAY_AUTH_TOKEN, from the file in RAY_AUTH_TOKEN_PATH, or from
~/.ray/auth_token, in that order. --token-file FILE sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=FILE
for the ray CLI only; the token never goes into the job's runtime environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNTIME_ENV = REPO / "cluster" / "runtime_env.yaml"
# Schemes cluster/stage_shards.py reads through pyarrow.fs. Only file:// is exercised by the test suite.
REMOTE_DATA_SCHEMES = ("s3", "gs", "gcs", "file")
# gene_ae.train's ray.init() sets some env vars in its own runtime env; Ray refuses to start a driver whose
# job runtime env sets any of the same keys ("Failed to merge the Job's runtime env"). reserved_env_keys()
# reads them from gene_ae/train/driver.py; this is the fallback if that source cannot be read.
RESERVED_ENV_FALLBACK = ("MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "PYTHONWARNINGS")
SECRET_HINT = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)


class UsageError(ValueError):
    pass


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(
        prog="cluster/submit.py",
        description="Submit gene-ae training to a Ray cluster (ray job submit). "
        "Arguments after `--` are passed to `python -m gene_ae.train`.",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
        help="the cluster's dashboard/job API, e.g. http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, $RAY_ADDRESS)",
    )
    p.add_argument("--data", required=True, help="absolute shard directory on every node, or s3:// gs:// file:// URI")
    p.add_argument("--storage", required=True, help="Ray storage path: absolute shared path, or s3:// gs:// URI")
    p.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI the job logs to (default: $MLFLOW_TRACKING_URI)",
    )
    p.add_argument("--runtime-env", default=str(DEFAULT_RUNTIME_ENV), help="runtime environment YAML")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="add an environment variable to the job (value taken from this shell when omitted); "
        "visible to anyone who can read the job's details on the dashboard",
    )
    p.add_argument(
        "--stage-dir",
        help="where remote shards are copied on every node (default /tmp/gene-ae-shards/<name>-<hash>)",
    )
    p.add_argument("--stage-timeout", type=float, default=900, help="seconds to wait for worker nodes to appear")
    p.add_argument("--submission-id", help="Ray job submission id (default gene-ae-<time>)")
    p.add_argument("--token-file", help="Ray auth token file; sets RAY_AUTH_MODE=token for the ray CLI")
    p.add_argument("--no-wait", action="store_true", help="return after submitting instead of following the logs")
    p.add_argument("--dry-run", action="store_true", help="print the command and runtime env; submit nothing")
    return p.parse_args(argv), train_args


def is_uri(value: str) -> bool:
    return "://" in value


def check_data(data: str) -> str:
    if is_uri(data):
        scheme = data.split("://", 1)[0].lower()
        if scheme not in REMOTE_DATA_SCHEMES:
            raise UsageError(
                f"--data {data}: scheme {scheme}:// is not supported "
                f"(use an absolute path or one of {', '.join(s + '://' for s in REMOTE_DATA_SCHEMES)})"
            )
        return data
    if not os.path.isabs(data):
        raise UsageError(
            f"--data {data}: must be absolute (the job runs in a temporary working directory on the "
            "cluster, so a relative path would point inside it)"
        )
    return os.path.normpath(data)


def check_storage(storage: str) -> str:
    if is_uri(storage):
        return storage
    if not os.path.isabs(storage):
        raise UsageError(f"--storage {storage}: must be absolute, on storage every node shares, or a URI")
    return os.path.normpath(storage)


def check_tracking_uri(uri: str | None) -> str:
    if not uri:
        raise UsageError(
            "no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI (without one the job would "
            "write ./mlflow.db inside its temporary working directory on the head node, and lose it)"
        )
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        raise UsageError(f"--tracking-uri {uri}: a relative sqlite path; use sqlite:////absolute/path.db or a server")
    if "://" not in uri and not os.path.isabs(uri):
        raise UsageError(f"--tracking-uri {uri}: a relative path; use an absolute path or a server URI")
    return uri


def default_stage_dir(uri: str) -> str:
    import hashlib

    name = re.sub(r"[^A-Za-z0-9._-]", "_", uri.rstrip("/").rsplit("/", 1)[-1]) or "shards"
    return f"/tmp/gene-ae-shards/{name}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def load_runtime_env(path: str) -> dict:
    try:
        with open(path) as f:
            env = yaml.safe_load(f) or {}
    except OSError as exc:
        raise UsageError(f"--runtime-env {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--runtime-env {path}: not valid YAML: {exc}") from None
    if not isinstance(env, dict):
        raise UsageError(f"--runtime-env {path}: expected a mapping at the top level")
    if "working_dir" in env:
        raise UsageError(f"--runtime-env {path}: working_dir is set by this script (the repository root)")
    return env


def reserved_env_keys() -> set[str]:
    """The env var names gene_ae.train's start_ray() passes to ray.init(), read from its source."""
    import ast

    try:
        tree = ast.parse((REPO / "gene_ae" / "train" / "driver.py").read_text())
    except (OSError, SyntaxError):
        return set(RESERVED_ENV_FALLBACK)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "start_ray":
            keys = {
                k.value
                for d in ast.walk(node)
                if isinstance(d, ast.Dict)
                for k in d.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            }
            return (keys - {"env_vars"}) or set(RESERVED_ENV_FALLBACK)
    return set(RESERVED_ENV_FALLBACK)


def job_env_vars(tracking_uri: str, extra: list[str], base: dict) -> dict[str, str]:
    env = {str(k): str(v) for k, v in (base or {}).items()}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    for item in extra:
        name, sep, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"--env {item!r}: not a variable name")
        if not sep:
            if name not in os.environ:
                raise UsageError(f"--env {name}: not set in this shell")
            value = os.environ[name]
        env[name] = value
    clash = sorted(set(env) & reserved_env_keys())
    if clash:
        raise UsageError(
            f"{', '.join(clash)}: gene_ae.train sets these itself; a job runtime env that repeats them makes Ray "
            "refuse to start the driver"
        )
    if any(k.startswith("RAY_AUTH") for k in env):
        raise UsageError("the Ray auth token belongs on the cluster nodes, not in the job's runtime env")
    return env


def train_flags(train_args: list[str]) -> tuple[int | None, bool]:
    """--workers and --gpu as gene_ae.train will read them (for sizing the staging wait)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workers", type=int)
    p.add_argument("--gpu", action="store_true")
    known, _ = p.parse_known_args(train_args)
    return known.workers, known.gpu


def build(args: argparse.Namespace, train_args: list[str]) -> tuple[list[str], dict, str]:
    """-> (ray job submit argv, runtime env, the entrypoint as the job will run it)."""
    if not args.address:
        raise UsageError("no cluster address: pass --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS")
    for flag in ("--data", "--storage"):
        if any(a == flag or a.startswith(flag + "=") for a in train_args):
            raise UsageError(f"{flag} goes before `--` (this script checks and passes it)")
    data = check_data(args.data)
    storage = check_storage(args.storage)
    tracking_uri = check_tracking_uri(args.tracking_uri)
    if tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri:
        print(
            "cluster/submit.py: warning: with a file or sqlite store, a new experiment keeps its artifacts in "
            "./mlruns of the job's temporary working directory; create the experiment with an absolute "
            "artifact_location first, or use a tracking server",
            file=sys.stderr,
        )
    runtime_env = load_runtime_env(args.runtime_env)
    runtime_env["env_vars"] = job_env_vars(tracking_uri, args.env, runtime_env.get("env_vars"))
    for name in sorted(runtime_env["env_vars"]):
        if SECRET_HINT.search(name):
            print(
                f"cluster/submit.py: warning: {name} goes into the job's runtime env, which the Ray dashboard shows "
                "to anyone who can reach it; prefer setting it on the cluster nodes",
                file=sys.stderr,
            )

    train = ["python", "-m", "gene_ae.train"]
    steps: list[list[str]] = []
    if is_uri(data):
        local = args.stage_dir or default_stage_dir(data)
        if not os.path.isabs(local):
            raise UsageError(f"--stage-dir {local}: must be an absolute path")
        stage = ["python", "cluster/stage_shards.py", data, local, "--timeout", f"{args.stage_timeout:g}"]
        workers, gpu = train_flags(train_args)
        if workers:
            stage += ["--workers", str(workers)] + (["--gpu"] if gpu else [])
        steps.append(stage)
        data = local
    steps.append([*train, "--data", data, "--storage", storage, *train_args])
    # Ray 2.60's `ray job submit` shell-quotes each argument after `--` (shlex.join), so a two-step
    # entrypoint goes through `bash -c` rather than as a bare `a && b`.
    if len(steps) == 1:
        entry_argv = steps[0]
    else:
        entry_argv = ["bash", "-c", " && ".join(shlex.join(s) for s in steps)]
    entrypoint = shlex.join(entry_argv)

    submission_id = args.submission_id or f"gene-ae-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [
        "ray",
        "job",
        "submit",
        "--address",
        args.address,
        "--working-dir",
        ".",
        "--runtime-env-json",
        json.dumps(runtime_env, sort_keys=True),
        "--submission-id",
        submission_id,
    ]
    if args.no_wait:
        cmd.append("--no-wait")
    cmd += ["--", *entry_argv]
    return cmd, runtime_env, entrypoint


def ray_cli() -> str:
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    try:
        cmd, runtime_env, entrypoint = build(args, train_args)
        env = dict(os.environ)
        if args.token_file:
            token = Path(args.token_file).expanduser()
            if not token.is_file() or not token.read_text().strip():
                raise UsageError(f"--token-file {args.token_file}: missing or empty")
            env.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token.resolve()))
    except UsageError as exc:
        print(f"cluster/submit.py: error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps({"command": cmd, "runtime_env": runtime_env, "entrypoint": entrypoint}, indent=2))
        return 0
    cmd[0] = ray_cli()
    print(f"[submit] {shlex.join(cmd[:4])} ... -- {entrypoint}", flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
