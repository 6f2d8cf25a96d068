#!/usr/bin/env python3
"""Copy a shard directory from object storage to the same local path on every node of a Ray cluster.

    python cluster/stage_shards.py s3://bucket/shards/genefam /tmp/gene-ae-shards/genefam [--workers 4 --gpu]

gene_ae.train reads shards from a local directory (its WebDataset loader opens local files), so a
cluster that keeps shards in object storage stages them first; cluster/submit.py puts this in front of
the training command when --data is a URI. The source is opened with pyarrow.fs
(FileSystem.from_uri: s3://, gs://, file://; credentials from the usual environment, e.g.
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL or the node's IAM role, and Google
application-default credentials). Only the files the manifest lists are copied, each is checked
against the manifest's size and sha256, and the directory appears atomically (a copy in a temporary
sibling, renamed into place); a node that already holds an identical copy skips it.

It runs one zero-CPU task pinned to each alive node. Nodes the autoscaler adds later get nothing, so
with --workers N it first asks the autoscaler for N worker bundles ({"GPU": 1} with --gpu, else
{"CPU": 1}) and waits until the cluster has them, then clears that request.

With --local it copies on this machine only, without Ray.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from shard_tools.files import atomic_dir, sha256_file
from shard_tools.manifest import check_replaceable, parse_manifest

CHUNK = 4 << 20


def _source(uri: str):
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(uri)
    return filesystem, root.rstrip("/")


def _read(filesystem, path: str) -> bytes:
    with filesystem.open_input_stream(path) as f:
        return f.read()


def _complete(dest: Path, manifest_raw: bytes, shards: list[dict]) -> bool:
    try:
        if (dest / "manifest.json").read_bytes() != manifest_raw:
            return False
        return all((dest / s["name"]).stat().st_size == s["bytes"] for s in shards)
    except OSError:
        return False


def stage(uri: str, dest: str) -> dict:
    """Copy the shard directory at `uri` to `dest` on this machine (idempotent, atomic, verified)."""
    started = time.perf_counter()
    filesystem, root = _source(uri)
    raw = _read(filesystem, f"{root}/manifest.json")
    manifest = parse_manifest(raw, f"{uri}/manifest.json")  # schema, names confined to the directory, counts
    shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "host": socket.gethostname(),
        "dest": str(target),
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "files": len(shards),
        "bytes": 0,
    }
    # One copier per machine at a time (several Ray nodes can share a machine and a path).
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target, raw, shards):
            return {**result, "status": "present", "seconds": time.perf_counter() - started}
        check_replaceable(target, overwrite=True)  # an outdated copy goes; anything else at dest is refused
        with atomic_dir(target) as tmp:  # a failed copy leaves nothing
            for s in shards:
                out_path = tmp / s["name"]
                out_path.parent.mkdir(parents=True, exist_ok=True)
                with filesystem.open_input_stream(f"{root}/{s['name']}") as src, open(out_path, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                size, digest = out_path.stat().st_size, sha256_file(out_path)
                if size != s["bytes"] or digest != s["sha256"]:
                    raise ValueError(
                        f"{uri}/{s['name']}: {size} bytes sha256 {digest[:12]}, the manifest says "
                        f"{s['bytes']} bytes sha256 {s['sha256'][:12]}"
                    )
                result["bytes"] += size
            (tmp / "manifest.json").write_bytes(raw)  # written last: a manifest means a complete copy
    return {**result, "status": "copied", "seconds": time.perf_counter() - started}


def wait_for_workers(workers: int, gpu: bool, timeout: float) -> None:
    import ray
    from ray.autoscaler.sdk import request_resources

    key = "GPU" if gpu else "CPU"
    request_resources(bundles=[{key: 1}] * workers)
    try:
        deadline = time.monotonic() + timeout
        while ray.cluster_resources().get(key, 0) < workers:
            if time.monotonic() > deadline:
                have = ray.cluster_resources().get(key, 0)
                raise TimeoutError(f"the cluster has {have:g} {key} after {timeout:g} s; {workers} needed")
            time.sleep(5)
    finally:
        request_resources(bundles=[])


def stage_on_all_nodes(uri: str, dest: str) -> list[dict]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    task = ray.remote(num_cpus=0, max_retries=2)(stage)
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(uri, dest)
        for n in nodes
    ]
    results = ray.get(refs)
    for node, res in zip(nodes, results):
        res.update(node_id=node["NodeID"], node_ip=node.get("NodeManagerAddress", ""))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cluster/stage_shards.py", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="shard directory URI: s3://, gs://, file:// (or a local path)")
    p.add_argument("dest", help="absolute local directory to create on every node")
    p.add_argument("--workers", type=int, default=0, help="wait until the cluster has this many worker slots")
    p.add_argument("--gpu", action="store_true", help="worker slots are GPUs")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for --workers")
    p.add_argument("--local", action="store_true", help="copy on this machine only, without Ray")
    args = p.parse_args(argv)
    if not os.path.isabs(args.dest):
        print(f"stage_shards: error: {args.dest}: must be an absolute path", file=sys.stderr)
        return 2
    source = args.source if "://" in args.source else Path(args.source).resolve().as_uri()
    try:
        if args.local:
            results = [stage(source, args.dest)]
        else:
            import ray

            ray.init(log_to_driver=False)
            if args.workers > 0:
                wait_for_workers(args.workers, args.gpu, args.timeout)
            results = stage_on_all_nodes(source, args.dest)
    except (OSError, ValueError, TimeoutError) as exc:
        print(f"stage_shards: error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        where = f"node {r['node_id'][:12]} ({r['node_ip']})" if "node_id" in r else r["host"]
        print(
            f"[stage] {where}: {r['status']} {r['files']} shards, {r['bytes']:,} bytes -> {r['dest']} "
            f"(manifest {r['manifest_sha256'][:12]}, {r['seconds']:.1f} s)",
            flush=True,
        )
    print(json.dumps({"staged": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
