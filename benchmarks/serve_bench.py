"""Latency of one query through `gene-ae serve --index` (Ray Serve) against the library and the CLI.

    python benchmarks/serve_bench.py [--model CKPT] [--records 600] [--shard-records 200] [--queries 40]
                                     [--cli-runs 5] [--threads 2] [--index DIR --query-file FASTA]

Builds an index in shards of the shared dog and chimp genes (`gene-ae embed --shard-records`), takes 10 %-mutated
copies of sampled records as queries, and times each query alone, warm:
- library: `engine.search` in this process (index open, model loaded); also each shard's `shard_hits` alone, the
  work one shard replica does per query;
- endpoint: POST /search to the Serve application on a local Ray (2 CPUs; one replica per shard and one
  ingress), over HTTP on 127.0.0.1; the hits are checked equal to the library's;
- CLI: `gene-ae search` as a whole process per query (start-up, index open and provenance check included).
Prints one markdown table (p50 / p99 / mean ms per query; p99 of a few dozen samples is near their maximum).
Without --model an untrained default-config model (seeded) is used: latency depends on its size, not its weights.
With --index (an index `gene-ae embed` wrote, e.g. peer_bench.py's 10^6 genes) and --query-file, that index and
the first --queries records of the file are timed instead, with the index's own model.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import redirect_stderr
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint (default: an untrained default-config model, seeded)")
    p.add_argument("--records", type=int, default=600)
    p.add_argument("--shard-records", type=int, default=200)
    p.add_argument("--queries", type=int, default=40)
    p.add_argument("--cli-runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--index", help="time this existing index (with --query-file) instead of building one")
    p.add_argument("--query-file", help="with --index: FASTA of queries (the first --queries are used)")
    args = p.parse_args()
    if bool(args.index) != bool(args.query_file):
        p.error("--index and --query-file go together")
    os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0")
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    ckpt, index, queries = _existing(args) if args.index else _setup(args, work)
    library, per_shard, hits, shards = _library(ckpt, index, queries)
    rows = [library, per_shard, _endpoint(index, queries, work, hits), _cli(index, queries, work, args.cli_runs)]
    what = (f"{index}: {_records(index):,} records in {shards} shards" if args.index else
            f"{args.records:,} records in {shards} shards of {args.shard_records:,}")  # fmt: skip
    print(f"{what}; {len(queries)} queries, one per call, warm; {os.cpu_count()} CPUs, {args.threads} torch "
          f"threads; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| path | calls | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['n']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['mean']:.1f} |")


def _setup(args, work: Path) -> tuple[str, Path, list[tuple[str, str]]]:
    from gene_ae.cli import main as gene_ae
    from gene_ae.core.mutate import mutate
    from gene_ae.core.records import iter_input
    from shard_tools.alphabet import decode
    from shard_tools.inputs import ReaderConfig

    genes = []
    for name in ("dog_sample.tsv.gz", "chimp_sample.tsv.gz"):
        genes += list(iter_input(REPO / "data/genefam" / name, ReaderConfig(label_column="class")))
    genes = genes[: args.records]
    (work / "genes.fa").write_text("".join(f">{g.id}\n{decode(g.tokens)}\n" for g in genes))
    ckpt = args.model or _untrained(work)
    with redirect_stderr(io.StringIO()):
        try:
            gene_ae(["embed", "--model", ckpt, "--input", str(work / "genes.fa"), "--out", str(work / "index"),
                     "--shard-records", str(args.shard_records)])  # fmt: skip
        except SystemExit as done:
            assert done.code == 0, "gene-ae embed failed"
    rng = np.random.default_rng(0)
    picked = rng.choice(len(genes), size=min(args.queries, len(genes)), replace=False)
    queries = [(f"q{j}", decode(mutate(genes[j].tokens, 0.1, rng))) for j in picked]
    return ckpt, work / "index", queries


def _existing(args) -> tuple[str, Path, list[tuple[str, str]]]:
    """(the index's model, the index, the first --queries records of --query-file)."""
    from itertools import islice

    from gene_ae.core.records import iter_input
    from gene_ae.index.directory import read_meta
    from shard_tools.alphabet import decode

    queries = [(r.id, decode(r.tokens)) for r in islice(iter_input(args.query_file), args.queries)]
    return read_meta(args.index).model_uri, Path(args.index), queries


def _records(index: Path) -> int:
    from gene_ae.index.collection import Collection

    return len(Collection.open(index).entries)


def _untrained(work: Path) -> str:
    import torch

    from gene_ae.config import Config
    from gene_ae.model.autoencoder import GeneAE
    from gene_ae.model.checkpoint import save

    torch.manual_seed(0)
    cfg = Config()
    return str(save(work / "ckpt", cfg, GeneAE(cfg.model)))


def _stats(path: str, ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"path": path, "n": a.size, "p50": np.percentile(a, 50), "p99": np.percentile(a, 99), "mean": a.mean()}


def _library(ckpt: str, index: Path, queries: list[tuple[str, str]]) -> tuple[dict, dict, list, int]:
    """(whole search, one shard's shard_hits, the hits as (subject id, score), number of shards)."""
    from gene_ae.index.collection import Collection
    from gene_ae.model.encoder import Encoder
    from gene_ae.search import engine
    from gene_ae.search.candidates import shard_hits
    from shard_tools.alphabet import encode

    collection = Collection.open(index)
    embed = partial(Encoder.load(ckpt).embed_tokens, batch_size=64)
    cfg = engine.SearchConfig()
    tokens = [encode(s) for _, s in queries]
    for t in tokens[:3]:
        engine.search(collection, [t], embed, cfg)
    ms, hits, shard_ms = [], [], []
    shape = engine.merge_shapes([engine.shard_shape(s) for s in collection.shards])
    for t in tokens:
        start = time.perf_counter()
        hits.append(engine.search(collection, [t], embed, cfg)[0])
        ms.append(1000 * (time.perf_counter() - start))
        asked = engine.ask(shape, [t], embed, cfg)
        for shard, lo in zip(collection.shards, collection.offsets[:-1]):
            start = time.perf_counter()
            shard_hits(shard, int(lo), asked, engine.depth(cfg), None)
            shard_ms.append(1000 * (time.perf_counter() - start))
    entries = collection.entries
    found = [[(entries[h.subject].id, round(h.score, 9)) for h in hs] for hs in hits]
    n = len(collection.shards)
    whole, one = _stats("library: engine.search in-process", ms), _stats("library: one shard's shard_hits", shard_ms)
    return whole, one, found, n


def _endpoint(index: Path, queries: list[tuple[str, str]], work: Path, want: list) -> dict:
    import ray
    from ray import serve

    from gene_ae.search import serve_index as served
    from gene_ae.search.searcher import search_model

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(work / "ray"), logging_level="ERROR",
             log_to_driver=False)  # fmt: skip
    try:
        load = partial(search_model, model=None, batch_size=64)
        url = served.deploy(index, load, served.ServeConfig(cpus=0.1), "127.0.0.1", port)
        ms, got = [], []
        for i, (qid, seq) in enumerate(queries[:3] + queries):
            body = json.dumps({"sequences": [{"id": qid, "sequence": seq}]}).encode()
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(req, timeout=300) as resp:
                rows = json.loads(resp.read())["hits"]
            if i >= 3:
                ms.append(1000 * (time.perf_counter() - start))
                got.append([(r["subject_id"], round(r["score"], 9)) for r in rows])
        same = sum(g == w for g, w in zip(got, want))
        top1 = sum(g[:1] == w[:1] for g, w in zip(got, want))
        print(f"endpoint against library: {same} of {len(want)} queries with the same hits (subjects, order, scores), "
              f"{top1} with the same first hit", file=sys.stderr, flush=True)  # fmt: skip
        for g, w in zip(got, want):
            if g != w:
                print(f"  first difference: endpoint {g[:4]} library {w[:4]}", file=sys.stderr, flush=True)
                break
        serve.shutdown()
    finally:
        ray.shutdown()
    return _stats("endpoint: POST /search (Ray Serve, HTTP)", ms)


def _cli(index: Path, queries: list[tuple[str, str]], work: Path, runs: int) -> dict:
    ms = []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for qid, seq in queries[:runs]:
        (work / "q.fa").write_text(f">{qid}\n{seq}\n")
        start = time.perf_counter()
        subprocess.run([str(BIN / "gene-ae"), "search", "--index", str(index), str(work / "q.fa")], check=True,
                       env=env, capture_output=True, timeout=600)  # fmt: skip
        ms.append(1000 * (time.perf_counter() - start))
    return _stats("CLI: gene-ae search, whole process", ms)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
