"""`gene-ae embed --ray`: the shards of an index built in parallel, one Ray task each (issue 18).

The driver reads the input and cuts it into index shards (build.index_shards: --shard-bases bases or --shard-records
records); each shard's records go to a task that loads the model and writes the shard with the in-process
path (build.write_shard) into the index's staging directory, at most `workers` tasks at once (the driver holds
the records of those shards only). Every shard is built with the settings resolved from the first batch of
records, as build_collection's are, so the index is the one `gene-ae embed` writes without --ray. On a
cluster (RAY_ADDRESS) the output directory must be storage that every node sees (docs/DEPLOY.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from gene_ae.core.local_ray import start_local_ray
from gene_ae.core.records import InputRecord
from gene_ae.index.build import (
    ONE_SHARD,
    BuildConfig,
    LocalEmbed,
    ModelInfo,
    ShardLimits,
    first_batch,
    index_shards,
    list_shards,
    resolve,
    write_shard,
)
from gene_ae.index.directory import IndexMeta, IndexWriter, write_index

# Passed on to the tasks, so that a models:/ URI resolves on every node as it does here.
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_DISABLE_TELEMETRY")


def build_collection_ray(
    records: Iterable[InputRecord],
    model: ModelInfo,
    out_dir: str | Path,
    cfg: BuildConfig,
    limits: ShardLimits = ONE_SHARD,
    overwrite: bool = False,
    source: str = "input",
    workers: int = 2,
) -> list[IndexMeta]:
    """build.build_collection with every shard written by a Ray task (one CPU each, `workers` at once), joining
    the cluster RAY_ADDRESS names or starting a local Ray. A task's failure (a bad record, a model that gives
    NaN) is raised here as its own error, and the staging directory is removed as without --ray."""
    import ray

    if not ray.is_initialized():
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        options = {"include_dashboard": False, "runtime_env": {"env_vars": env} if env else None}
        if os.environ.get("RAY_ADDRESS"):
            ray.init(**options)
        else:
            start_local_ray(**options)  # loopback only
    task = ray.remote(num_cpus=1)(_build_shard)
    with write_index(out_dir, overwrite) as writer:
        running, metas, resolved = {}, {}, cfg
        for number, (directory, part) in enumerate(index_shards(writer, records, limits)):
            shard = list(part)
            if number == 0:
                if not shard:
                    raise ValueError(f"{source}: no sequences to embed")
                resolved = resolve(cfg, [r.tokens.size for r in first_batch(shard, cfg.batch_bases)], model.window)
            running[task.remote(shard, model if number == 0 else model.later_shard(), str(directory), resolved, source,
                                cfg.batch_size)] = number  # fmt: skip
            while len(running) >= workers:
                _collect(ray, running, metas)
        while running:
            _collect(ray, running, metas)
        list_shards(writer)
    return [metas[i] for i in sorted(metas)]


def _collect(ray, running: dict, metas: dict) -> None:
    """Wait for one task; its IndexMeta into `metas` by shard number, or its error raised as itself."""
    (done,), _ = ray.wait(list(running), num_returns=1)
    number = running.pop(done)
    try:
        metas[number] = ray.get(done)
    except ray.exceptions.RayTaskError as exc:
        for ref in running:
            ray.cancel(ref, force=True)
        raise exc.cause from None


def _build_shard(
    records: Sequence[InputRecord], model: ModelInfo, directory: str, cfg: BuildConfig, source: str, batch_size: int
) -> IndexMeta:
    """One shard, in a Ray task: the model loaded here, the records embedded on this task's one CPU."""
    import torch

    from gene_ae.model.encoder import Encoder

    torch.set_num_threads(1)
    embed = LocalEmbed(Encoder.load(model.uri), batch_size)
    return write_shard(iter(records), embed, model, IndexWriter(Path(directory), threads=1), cfg, source)
