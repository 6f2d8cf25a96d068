"""Benchmark gene-ae search speed beside the 5-mer and sourmash baselines, and faiss index scaling.

    .venv/bin/python benchmarks/embed_bench.py [--model URI] [--sizes 1e4,1e5,1e6] [--quick] [--out FILE]

On a busy machine pass --threads 1: torch's intra-op threads then stop fighting other processes for cores
(two threads on two loaded cores measured 20x slower than one here).

Two markdown tables from one run:

1. Real collection (the bundled genes, data/genefam/*.tsv.gz, 900 genes): for gene-ae (an Encoder on CPU, and
   on the GPU when one is visible), 5-mer profiles (gene_ae.evaluate.baselines.kmer_profiles) + a flat faiss index, and
   sourmash (gene_ae.evaluate.baselines.sketch / SourmashIndex, ksize 21, scaled from the collection): vectors or
   sketches per second (sequences and bases), the time from collection to searchable index, and per-query
   latency p50/p99 (k=10, one query per call) for search alone and end to end (embed or sketch the query,
   then search), with ratios to sourmash. Without --model an untrained default-config model is built: speed
   does not depend on the weights.
2. Index scaling: faiss flat and HNSW built by gene_ae.index.build_faiss on 10^4..10^6 random unit vectors
   of the model's dimension (embedding 10^6 real sequences is out of reach on 2 CPU cores): build time,
   per-query latency p50/p99 (k=10, one query per call) and HNSW recall@10 against flat, for fresh random
   queries (no neighbourhood structure: the hard case) and for noisy copies of stored vectors (cosine ~0.9 to
   their source: the near-duplicate case a search for a mutated sequence resembles).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GENES = [REPO / "data" / "genefam" / "chimp_sample.tsv.gz", REPO / "data" / "genefam" / "dog_sample.tsv.gz"]
K = 10


# ---------------------------------------------------------------- helpers


def load_genes(paths: Sequence[Path], limit: int | None) -> list[np.ndarray]:
    """Token arrays of every record in the files (tables read their 'sequence' column)."""
    from shard_tools.inputs import ReaderConfig, read_records

    seqs = [rec.tokens for path in paths for rec in read_records(path, ReaderConfig(label_column="class"))]
    return seqs[:limit] if limit else seqs


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def latencies(fn: Callable[[int], Any], n: int) -> np.ndarray:
    """Milliseconds of fn(i) for i in range(n), one call each, after one untimed call."""
    fn(0)
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out[i] = (time.perf_counter() - start) * 1e3
    return out


def pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q))


def make_encoder(uri: str | None, device: str):
    """(Encoder, description): the given model, or an untrained default-config one (seeded)."""
    import torch

    from gene_ae.config import Config
    from gene_ae.model.autoencoder import GeneAE, count_parameters
    from gene_ae.model.encoder import Encoder

    if uri:
        enc = Encoder.load(uri, device=device)
        what = f"{uri}"
    else:
        torch.manual_seed(0)
        cfg = Config()
        enc = Encoder(GeneAE(cfg.model), device=device)
        what = "untrained default-config model (speed does not depend on training)"
    m = enc.cfg
    return enc, (
        f"{what}: dim {enc.dim}, window {enc.window}, k-mer bags {m.kmer_sizes}, "
        f"{count_parameters(enc.model) / 1e6:.2f} M params"
    )


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# ---------------------------------------------------------------- table 1: the real collection


def bench_vectors(
    name: str,
    device: str,
    embed: Callable[[Sequence[np.ndarray]], np.ndarray],
    seqs: list[np.ndarray],
    nq: int,
    rerank: bool = False,
) -> dict:
    """Vectors for the collection, a flat index, single-query latency (search alone and end to end);
    with rerank, every search also aligns the query to its K hits (gene-ae search --rerank K)."""
    from gene_ae.index.vectors import build_faiss, search
    from gene_ae.search.engine import rerank_rows

    def find(i: int, query: np.ndarray):
        idx, sims = search(index, query, K)
        return rerank_rows([seqs[i]], idx, seqs.__getitem__, K, K) if rerank else (idx, sims)

    bases = sum(int(s.size) for s in seqs)
    embed(seqs[:4])  # warm-up
    vectors, t_vec = timed(lambda: embed(seqs))
    (index, _), t_index = timed(lambda: build_faiss(vectors, "flat"))
    search_ms = latencies(lambda i: find(i, vectors[i : i + 1]), nq)
    e2e_ms = latencies(lambda i: find(i, embed([seqs[i]])), nq)
    note = f"; every search aligns the query to its {K} hits (edlib)" if rerank else ""
    return dict(
        method=name,
        device=device,
        seqs_per_s=len(seqs) / t_vec,
        bases_per_s=bases / t_vec,
        build_s=t_vec + t_index,
        search=search_ms,
        e2e=e2e_ms,
        notes=f"vectors {t_vec:.2f} s + faiss flat {t_index * 1e3:.1f} ms{note}",
    )


def bench_sourmash(seqs: list[np.ndarray], nq: int) -> dict:
    from gene_ae.evaluate import baselines

    scaled = baselines.auto_scaled([s.size for s in seqs])
    bases = sum(int(s.size) for s in seqs)
    baselines.sketch(seqs[:4], 21, scaled)  # warm-up
    sketches, t_sketch = timed(lambda: baselines.sketch(seqs, 21, scaled))
    index, t_index = timed(lambda: baselines.SourmashIndex(seqs, ksize=21, scaled=scaled))
    search_ms = latencies(lambda i: index.search_sketches([sketches[i]], K), nq)
    e2e_ms = latencies(lambda i: index.search([seqs[i]], K), nq)
    return dict(
        method=f"sourmash (k 21, scaled {scaled}, Jaccard)",
        device="cpu, 1 thread",
        seqs_per_s=len(seqs) / t_sketch,
        bases_per_s=bases / t_sketch,
        build_s=t_index,
        search=search_ms,
        e2e=e2e_ms,
        notes=f"SourmashIndex (sketching {t_sketch:.2f} s + sparse presence matrix); exact brute-force Jaccard",
    )


def real_rows(args: argparse.Namespace, seqs: list[np.ndarray]) -> tuple[list[dict], str, int]:
    import torch

    from gene_ae.evaluate import baselines

    enc, what = make_encoder(args.model, "cpu")
    nq = min(args.real_queries, len(seqs))
    rows = []
    print(f"search_bench: gene-ae embedding on CPU ({len(seqs)} sequences) ...", file=sys.stderr, flush=True)
    cpu = f"cpu, torch threads {torch.get_num_threads()}"
    rows.append(bench_vectors("gene-ae", cpu, enc.embed_tokens, seqs, nq))
    rows.append(bench_vectors(f"gene-ae + alignment re-rank of the top {K}", cpu, enc.embed_tokens, seqs, nq, True))
    if torch.cuda.is_available():
        from gene_ae.model.encoder import Encoder

        print("search_bench: gene-ae embedding on the GPU ...", file=sys.stderr, flush=True)
        gpu = Encoder(enc.model, device="cuda")
        rows.append(bench_vectors("gene-ae", f"{torch.cuda.get_device_name()}, fp32", gpu.embed_tokens, seqs, nq))
        enc.model.to("cpu")
    else:
        rows.append(dict(method="gene-ae", device="cuda", notes="no GPU here"))
    print("search_bench: 5-mer profiles ...", file=sys.stderr, flush=True)
    rows.append(bench_vectors("5-mer profile + faiss flat", "cpu, numpy", baselines.kmer_profiles, seqs, nq))
    if baselines.is_available():
        print("search_bench: sourmash ...", file=sys.stderr, flush=True)
        rows.append(bench_sourmash(seqs, nq))
    else:
        rows.append(dict(method="sourmash", device="cpu", notes="sourmash is not installed"))
    return rows, what, enc.dim


def real_table(rows: list[dict]) -> str:
    ref = next((r for r in rows if r["method"].startswith("sourmash") and "search" in r), None)
    lines = [
        "| method | device | seqs/s | bases/s | collection -> index s | search p50 ms | search p99 ms "
        "| end-to-end p50 ms | end-to-end p99 ms | bases/s / sourmash | search p50 / sourmash "
        "| end-to-end p50 / sourmash | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "search" not in r:
            lines.append(f"| {r['method']} | {r['device']} |" + " |" * 10 + f" {r['notes']} |")
            continue
        ratios = ["", "", ""]
        if ref is not None:
            ratios = [
                f"{r['bases_per_s'] / ref['bases_per_s']:.2f}",
                f"{pct(r['search'], 50) / pct(ref['search'], 50):.3f}",
                f"{pct(r['e2e'], 50) / pct(ref['e2e'], 50):.2f}",
            ]
        lines.append(
            f"| {r['method']} | {r['device']} | {r['seqs_per_s']:,.1f} | {r['bases_per_s']:,.0f} | {r['build_s']:.2f} "
            f"| {pct(r['search'], 50):.3f} | {pct(r['search'], 99):.3f} | {pct(r['e2e'], 50):.2f} "
            f"| {pct(r['e2e'], 99):.2f} | {' | '.join(ratios)} | {r['notes']} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- table 2: index scaling on random vectors


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row's true top-k that was found."""
    return float(np.mean([np.intersect1d(f[f >= 0], t).size / t.size for f, t in zip(found, truth)]))


def bench_index(base: np.ndarray, kind: str, queries: dict[str, np.ndarray], nq: int) -> tuple[dict, dict]:
    """Build one index; time single random queries; return its row and its top-k for each query set."""
    from gene_ae.index.vectors import build_faiss, search

    (index, _), t_build = timed(lambda: build_faiss(base, kind))
    ms = latencies(lambda i: search(index, queries["fresh"][i : i + 1], K), nq)
    found = {name: search(index, q, K)[0] for name, q in queries.items()}
    return dict(n=len(base), dim=base.shape[1], kind=kind, build_s=t_build, ms=ms), found


def scaling_rows(sizes: list[int], dim: int, nq: int, seed: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(seed)
    for n in sizes:
        print(f"search_bench: {n:,} random unit vectors of dim {dim} ...", file=sys.stderr, flush=True)
        base = unit(rng.standard_normal((n, dim), dtype=np.float32))
        noise = rng.standard_normal((nq, dim), dtype=np.float32) * np.float32(0.484 / np.sqrt(dim))  # cos ~0.9
        queries = {
            "fresh": unit(rng.standard_normal((nq, dim), dtype=np.float32)),
            "near": unit(base[rng.integers(0, n, nq)] + noise),
        }
        flat, truth = bench_index(base, "flat", queries, nq)
        hnsw, found = bench_index(base, "hnsw", queries, nq)
        hnsw["recall_fresh"] = recall(found["fresh"], truth["fresh"])
        hnsw["recall_near"] = recall(found["near"], truth["near"])
        rows += [flat, hnsw]
        del base
    return rows


def scaling_table(rows: list[dict]) -> str:
    lines = [
        "| vectors | dim | index | build s | query p50 ms | query p99 ms | queries/s (one per call) "
        "| recall@10 vs flat, random queries | recall@10 vs flat, near-duplicate queries |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rec = ["1 (exact)"] * 2 if r["kind"] == "flat" else [f"{r['recall_fresh']:.3f}", f"{r['recall_near']:.3f}"]
        lines.append(
            f"| {r['n']:,} | {r['dim']} | {r['kind']} | {r['build_s']:.2f} | {pct(r['ms'], 50):.3f} "
            f"| {pct(r['ms'], 99):.3f} | {1e3 / r['ms'].mean():,.0f} | {rec[0]} | {rec[1]} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1e4,1e5, got {text!r}") from None
    if not sizes or min(sizes) < K:
        raise argparse.ArgumentTypeError(f"sizes must be at least {K}, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="Encoder.load URI or checkpoint dir (default: untrained default)")
    p.add_argument("--input", type=Path, action="append", default=None, help="sequence file(s) (default: genefam)")
    p.add_argument("--sizes", type=parse_sizes, default=None, help="index sizes (default 1e4,1e5,1e6; quick 1e3,1e4)")
    p.add_argument("--queries", type=int, default=None, help="single queries per scaling row (default 1000; quick 50)")
    p.add_argument("--real-queries", type=int, default=None, help="single queries per method (default 200; quick 10)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N sequences (quick: 20)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for embedding (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random vectors")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown tables here")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([1000, 3000] if args.quick else [10_000, 100_000, 1_000_000])
    args.queries = args.queries or (50 if args.quick else 1000)
    args.real_queries = args.real_queries or (10 if args.quick else 200)
    args.limit = args.limit or (20 if args.quick else None)
    if args.queries < 2 or args.real_queries < 2:
        p.error("--queries and --real-queries must be at least 2")

    import faiss
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    paths = args.input or GENES
    load_before = os.getloadavg()
    seqs = load_genes(paths, args.limit)
    if not seqs:
        print(f"search_bench: no sequences in {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    real, what, dim = real_rows(args, seqs)
    scaling = scaling_rows(args.sizes, dim, args.queries, args.seed)
    load_after = os.getloadavg()
    names = ", ".join(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths)
    bases = sum(int(s.size) for s in seqs)
    header = (
        f"gene-ae search benchmark{' (--quick: tiny sizes, NOT a measurement)' if args.quick else ''} on "
        f"{platform.node() or 'host'}: {os.cpu_count()} CPUs visible, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP "
        f"threads), Python {platform.python_version()}, GPU: "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU here'}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (numbers are only meaningful on an idle machine).\n"
        f"Model: {what}."
    )
    real_head = (
        f"### Real collection: {len(seqs):,} sequences, {bases:,} bases ({names})\n\n"
        f"Queries: the first {min(args.real_queries, len(seqs))} members, one per call, k={K}. search = the index "
        "alone (query vector or sketch ready); end-to-end = embed / profile / sketch the query, then search. "
        "collection -> index = vectors or sketches for every sequence + index build. Ratios to sourmash: "
        "bases/s above 1 = faster than sourmash sketching; latency below 1 = faster than sourmash search."
    )
    scale_head = (
        f"### Index scaling: random unit vectors of dim {dim}, k={K}, {args.queries} single queries per row\n\n"
        "Random vectors stand in for embeddings because embedding 10^6 real sequences is out of reach on 2 CPU "
        "cores; index speed depends only on count and dim. Indexes as gene_ae.index.build_faiss builds them "
        "(flat = exact inner product; HNSW M=32, efConstruction 80, efSearch 128). Latency is timed with the "
        "random queries. Random queries have no real neighbourhood (the hard case for HNSW recall); near-duplicate "
        "queries are noisy copies (cosine ~0.9) of stored vectors."
    )
    text = f"{header}\n\n{real_head}\n\n{real_table(real)}\n\n{scale_head}\n\n{scaling_table(scaling)}\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
