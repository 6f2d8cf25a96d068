"""Search that finds what alignment finds: quality per data set and stage, the re-ranking depth, and scale.

    python benchmarks/search_bench.py [--model URI] [--parts depth,quality,scale,speed] [--quick] [--threads 2]
                                      [--scale-n 1000000] [--out FILE]

Three markdown tables from one run (mutated copies by gene_ae.core.mutate, seeded; recall@1 = the copy's source
ranks first):

1. depth: the default re-ranking depth, chosen on the chimp genes (genefam/chimp_data.txt, a set no other
   table reports on): recall@1 at 20 and 30 % and time per query for depths 0..50 of the default search.
2. quality: per shared data set (dog genes, 16S, mpox genomes, 20-100 kb windows of the two bacterial
   genomes), recall@1 per divergence for each stage alone (dense vectors, window votes, k-mer votes), fused
   without alignment, the default search (fused + alignment), and exhaustive alignment of the query against
   every record with the same aligner (gene_ae.search.align.align_hit) on a subset of the queries; time per query
   of the default search (query embedding included; later stages reuse the query vectors, so their times
   are search alone) against exhaustive alignment in the same run.
3. scale: 10^6 vectors from real data: every 512-base window (stride 256) of the shared sets, and mutated
   copies (1-10 %) of them until 10^6; each one's canonical 5-mer profile (512 dimensions, the default
   model's latent size; an untrained default model's k-mer bags are a random projection of such profiles)
   as the vector. faiss exact search against IVF (nprobe sweep) and HNSW: build time, memory, p50/p99 per
   query (one query per call), recall@10 against exact search, for 10 %-mutated copies of collection
   windows. The k-mer index is built on the first --sparse-n of the same windows and its memory and query
   time scaled linearly to 10^6 (postings grow with the collection).
4. speed: vectors (or sketches) per second from tokens for gene-ae, the 7-mer profile hashed to the model's
   size, exact 7-mer counts and sourmash (k 21, scaled 1), on dog genes and mpox genomes, best of 3.

Without --model an untrained default-config model is used (seeded), as a control; pass the trained checkpoint
(docs/BENCHMARKS.md gives both runs). The speed rows do not depend on weights.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("GENE_AE_SHARED_DATA", "/work/shared/data"))
DIVERGENCES = (0.01, 0.05, 0.10, 0.20, 0.30)


# ------------------------------------------------------------------------------------------------ inputs


def read(path: Path, label: str | None = None) -> list[np.ndarray]:
    from gene_ae.core.records import iter_input
    from shard_tools.inputs import ReaderConfig

    return [r.tokens for r in iter_input(path, ReaderConfig(label_column=label) if label else None)]


def bacterial_windows(seed: int = 0) -> list[np.ndarray]:
    """Consecutive windows of random length 20-100 kb cut from the two bacterial genomes."""
    rng = np.random.default_rng(seed)
    out = []
    for name in ("E.Coli__MG1655-K12.fasta.gz", "S.Aureus__N315.fasta.gz"):
        for genome in read(DATA / "bacteria" / name):
            start = 0
            while start + 20_000 <= genome.size:
                length = int(rng.integers(20_000, 100_001))
                out.append(genome[start : start + length])
                start += length
    return out


def datasets() -> dict[str, list[np.ndarray]]:
    return {
        "dog genes": read(DATA / "genefam" / "dog_data.txt", "class"),
        "16S": read(DATA / "rrna16s" / "ten_16s.100.fa.gz"),
        "mpox genomes": read(DATA / "viruses" / "mpox_nextclade_examples.fasta.gz"),
        "bacteria 20-100 kb": bacterial_windows(),
    }


def make_encoder(uri: str | None):
    import torch

    from gene_ae.config import Config
    from gene_ae.model.autoencoder import GeneAE
    from gene_ae.model.encoder import Encoder

    if uri:
        return Encoder.load(uri, device="cpu"), uri
    torch.manual_seed(0)
    cfg = Config()
    return Encoder(GeneAE(cfg.model), device="cpu"), "untrained default-config model"


def build(seqs: Sequence[np.ndarray], encoder, out: Path):
    from gene_ae.core.records import InputRecord
    from gene_ae.index import build as embedding
    from gene_ae.index.directory import IndexDir

    embed = partial(embedding.embed_local, encoder, batch_size=64)
    model = embedding.ModelInfo(uri="bench", version="", dim=encoder.dim, window=encoder.window)
    records = (InputRecord(f"r{i}", s) for i, s in enumerate(seqs))
    start = time.perf_counter()
    embedding.build_index(records, embed, model, out, embedding.BuildConfig(), overwrite=True)
    return IndexDir.open(out), embed, time.perf_counter() - start


# --------------------------------------------------------------------------------------------- searching


class Timed:
    """A (queries, k) -> indices search that adds up its own time."""

    def __init__(self, fn: Callable[[Sequence[np.ndarray], int], np.ndarray]):
        self.fn, self.seconds, self.queries = fn, 0.0, 0

    def __call__(self, queries: Sequence[np.ndarray], k: int) -> np.ndarray:
        start = time.perf_counter()
        out = self.fn(queries, k)
        self.seconds += time.perf_counter() - start
        self.queries += len(queries)
        return out

    @property
    def ms_per_query(self) -> float:
        return 1e3 * self.seconds / max(self.queries, 1)


class Memo:
    """An embed that remembers vectors by sequence content, so stages after the first reuse the queries'
    vectors (the first stage measured pays for embedding)."""

    def __init__(self, embed: Callable[[list[np.ndarray]], np.ndarray]):
        self.embed, self.cache = embed, {}

    def __call__(self, seqs: list[np.ndarray]) -> np.ndarray:
        from gene_ae.evaluate.methods import digest

        keys = [digest(s) for s in seqs]
        todo = {k: s for k, s in zip(keys, seqs) if k not in self.cache}
        if todo:
            self.cache.update(zip(todo, self.embed(list(todo.values()))))
        return np.stack([self.cache[k] for k in keys])


def library_search(loaded, embed, **cfg) -> Timed:
    from gene_ae.search import engine as search

    def fn(queries: Sequence[np.ndarray], k: int) -> np.ndarray:
        c = search.SearchConfig(**{"k": k, **cfg})
        hits = search.search(loaded, queries, embed, c)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hs in enumerate(hits):
            out[row, : len(hs)] = [h.subject for h in hs]
        return out

    return Timed(fn)


def exhaustive(seqs: Sequence[np.ndarray]) -> Timed:
    """Align each query against every record (gene_ae.search.align.align_hit) and rank by identity."""
    from gene_ae.search.align import align_hit

    def fn(queries: Sequence[np.ndarray], k: int) -> np.ndarray:
        out = []
        for q in queries:
            ident = np.array([align_hit(q, s).identity for s in seqs])
            out.append(np.argsort(-ident, kind="stable")[:k])
        return np.array(out)

    return Timed(fn)


def recall_row(search: Timed, seqs, sources, seed: int = 0) -> list[float]:
    from gene_ae.evaluate.metrics import copy_recall

    return copy_recall(search, seqs, sources, DIVERGENCES, seed, (1,))["recall@1"]


# ------------------------------------------------------------------------------------------------ tables


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows])


def depth_table(encoder, work: Path, n_queries: int) -> str:
    seqs = read(DATA / "genefam" / "chimp_data.txt", "class")
    loaded, embed, _ = build(seqs, encoder, work / "chimp")
    from gene_ae.evaluate.metrics import copy_recall, sample_sources

    sources = sample_sources(len(seqs), n_queries, 1)
    rows = []
    for depth in (0, 5, 10, 20, 30, 50):
        s = library_search(loaded, embed, rerank=depth)
        r = copy_recall(s, seqs, sources, (0.2, 0.3), 1, (1,))["recall@1"]
        rows.append([depth, *r, s.ms_per_query])
        print(f"  depth {depth}: {r} {s.ms_per_query:.1f} ms", file=sys.stderr, flush=True)
    return table(["--rerank", "recall@1 d=0.2", "recall@1 d=0.3", "ms/query"], rows)


def quality_table(encoder, work: Path, quick: bool, sets: Sequence[str] = ()) -> str:
    from gene_ae.evaluate.metrics import sample_sources

    rows = []
    for name, seqs in datasets().items():
        if sets and name not in sets:
            continue
        long_set = np.median([s.size for s in seqs]) > 20_000
        n_q = min(len(seqs), (5 if long_set else 50) if quick else (10 if long_set else 100))
        n_exh = min(n_q, 2 if long_set else 10) if quick else min(n_q, 3 if long_set else 20)
        loaded, embed, build_s = build(seqs, encoder, work / name.replace(" ", "_"))
        print(f"{name}: {len(seqs)} records, index built in {build_s:.0f} s", file=sys.stderr, flush=True)
        sources = sample_sources(len(seqs), n_q, 0)
        memo = Memo(embed)
        stages = [  # the default first: its time includes embedding the queries, later stages reuse the vectors
            ("fused + alignment (default)", {}),
            ("dense vectors", {"sources": ("dense",), "rerank": 0}),
            ("window votes", {"sources": ("windows",), "rerank": 0}),
            ("k-mer votes", {"sources": ("sparse",), "rerank": 0}),
            ("k-mer votes + alignment", {"sources": ("sparse",)}),
            ("fused (RRF)", {"rerank": 0}),
        ]
        default_ms = 0.0
        for stage, cfg in stages:
            if stage == "window votes" and loaded.windows is None:
                continue
            s = library_search(loaded, memo, **cfg)
            r = recall_row(s, seqs, sources)
            default_ms = default_ms or s.ms_per_query
            rows.append([name, stage, n_q, *r, s.ms_per_query, ""])
            print(f"  {stage}: {[round(x, 3) for x in r]} {s.ms_per_query:.1f} ms", file=sys.stderr, flush=True)
        ex = exhaustive(seqs)
        r = recall_row(ex, seqs, sources[:n_exh])
        rows.append([name, "exhaustive alignment", n_exh, *r, ex.ms_per_query, f"{ex.ms_per_query / default_ms:.1f}x"])
        print(f"  exhaustive: {[round(x, 3) for x in r]} {ex.ms_per_query:.1f} ms", file=sys.stderr, flush=True)
    header = ["data set", "stage", "queries/d"] + [f"d={d:g}" for d in DIVERGENCES]
    return table(header + ["ms/query", "exhaustive / default"], rows)


# ------------------------------------------------------------------------------------------------- scale


def speed_table(encoder, repeats: int = 3) -> str:
    """Vectors (or sketches) per second from token arrays, best of `repeats`, for the model and the classic
    methods in the same run: on genes (dog genes) and on long sequences (mpox genomes)."""
    from gene_ae.evaluate import baselines

    methods: dict[str, Callable[[list[np.ndarray]], object]] = {
        "gene-ae (Encoder.embed_tokens)": encoder.embed_tokens,
        "7-mer@512 hashed (baselines.hashed_profiles)": partial(baselines.hashed_profiles, k=7, dim=encoder.dim),
        "exact 7-mer counts (baselines.kmer_matrix)": partial(baselines.kmer_matrix, k=7),
    }
    if baselines.is_available():
        methods["sourmash k=21 scaled=1 (baselines.sketch)"] = partial(baselines.sketch, ksize=21, scaled=1)
    sets = {"dog genes": read(DATA / "genefam" / "dog_data.txt", "class"),
            "mpox genomes": read(DATA / "viruses" / "mpox_nextclade_examples.fasta.gz")}  # fmt: skip
    rows = []
    for set_name, seqs in sets.items():
        bases = sum(s.size for s in seqs)
        rates = {}
        for name, fn in methods.items():
            fn(seqs[:4])  # warm-up: imports, allocations
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                fn(seqs)
                best = min(best, time.perf_counter() - start)
            rates[name] = bases / best
        ours = next(iter(rates.values()))
        for name, rate in rates.items():
            rows.append([set_name, name, f"{len(seqs):,}", f"{rate / 1e6:.2f}", f"{rate / ours:.2f}"])
    return table(["set", "method", "sequences", "M bases/s", "/ gene-ae"], rows)


def scale_collection(n: int, seed: int = 0) -> list[np.ndarray]:
    """n windows of 512 bases: every window (stride 256) of the shared sets, then mutated copies (1-10 %)."""
    from gene_ae.core.mutate import mutate
    from gene_ae.index.kmer_index import segment_starts

    base = []
    files = [("rrna16s/ten_16s.100.fa.gz", None), ("genefam/chimp_data.txt", "class"),
             ("genefam/dog_data.txt", "class"), ("viruses/mpox_nextclade_examples.fasta.gz", None),
             ("bacteria/E.Coli__MG1655-K12.fasta.gz", None), ("bacteria/S.Aureus__N315.fasta.gz", None)]  # fmt: skip
    sources = [read(DATA / f, label) for f, label in files]
    for seqs in sources:
        for s in seqs:
            base += [s[a : a + 512] for a in segment_starts(int(s.size), 512) if s.size >= 512]
    rng = np.random.default_rng(seed)
    out = base[:n]
    while len(out) < n:
        i = int(rng.integers(len(base)))
        out.append(mutate(base[i], float(rng.uniform(0.01, 0.10)), rng))
    return out


def profile_vectors(seqs: Sequence[np.ndarray], chunk: int = 20_000) -> np.ndarray:
    """Canonical 5-mer profiles: 512 dimensions, L2-normalised."""
    from gene_ae.evaluate.baselines import kmer_profiles, rc_index

    rc = rc_index(5)
    canonical = np.flatnonzero(np.arange(1024) <= rc)
    out = np.empty((len(seqs), canonical.size), np.float32)
    for a in range(0, len(seqs), chunk):
        p = kmer_profiles(seqs[a : a + chunk], k=5, canonical=True)[:, canonical]
        out[a : a + chunk] = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    return out


def scale_table(n: int, n_queries: int, sparse_n: int, hnsw: bool, ivf: str, work: Path) -> str:
    from embed_bench import latencies  # one timing loop for the benchmarks (same folder)

    from gene_ae.core.mutate import mutate
    from gene_ae.index import vectors as index
    from gene_ae.index.kmer_index import KmerIndex

    start = time.perf_counter()
    seqs = scale_collection(n)
    cached = work / f"scale-vectors-{n}.npy"  # the same seeded collection every run: vectors are reused
    vectors = np.load(cached) if cached.exists() else profile_vectors(seqs)
    np.save(cached, vectors)
    print(f"scale: {len(seqs):,} windows, vectors in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rng = np.random.default_rng(7)
    picks = rng.choice(len(seqs), n_queries, replace=False)
    query_seqs = [mutate(seqs[i], 0.10, rng) for i in picks]
    queries = profile_vectors(query_seqs)
    flat, _ = index.build_faiss(vectors, "flat")
    truth, _ = index.search(flat, queries, 10)
    rows = []

    def measure(name: str, idx, build_s: float, mem_mb: float, timed: int = n_queries) -> None:
        ms = latencies(lambda i: index.search(idx, queries[i : i + 1], 10), timed)
        found, _ = index.search(idx, queries, 10)
        recall = float(np.mean([np.isin(f, t).mean() for f, t in zip(found, truth)]))
        self_hit = float(np.mean(found[:, 0] == picks))
        rows.append(
            [name, f"{len(seqs):,}", build_s, mem_mb, np.percentile(ms, 50), np.percentile(ms, 99), recall, self_hit]
        )
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)

    header = ["index", "vectors", "build s", "memory MiB", "p50 ms", "p99 ms", "recall@10 vs exact", "source at rank 1"]
    measure("faiss flat (exact)", flat, 0.0, vectors.nbytes / 2**20, timed=20)  # ~1 s a query: 20 timed
    for spec in ivf.split(";"):  # "NLIST:NPROBE,NPROBE;..." (NLIST 0 = index.ivf_lists)
        nlist, _, probes = spec.partition(":")
        t = time.perf_counter()
        ivf_index = index.build_ivf(vectors, int(nlist) or index.ivf_lists(len(vectors)))
        build_s = time.perf_counter() - t
        for nprobe in (int(x) for x in probes.split(",")):
            ivf_index.nprobe = nprobe
            mem = (vectors.nbytes + 8 * n + 2048 * ivf_index.nlist) / 2**20
            measure(f"IVF{ivf_index.nlist} nprobe {nprobe}", ivf_index, build_s, mem)
        del ivf_index
    if hnsw:
        t = time.perf_counter()
        h, _ = index.build_faiss(vectors, "hnsw")
        build_s = time.perf_counter() - t
        for ef in (64, 128, 256):
            h.hnsw.efSearch = ef
            measure(
                f"HNSW M{index.HNSW_M} efSearch {ef}",
                h,
                build_s,
                vectors.nbytes / 2**20 + len(vectors) * index.HNSW_M * 8 / 2**20,
            )
    if not sparse_n:
        return table(header, rows)
    t = time.perf_counter()
    sp = KmerIndex.build(seqs[:sparse_n])
    build_s = time.perf_counter() - t
    ms = latencies(lambda i: sp.search_segments([query_seqs[i]], 10), n_queries)
    scale = len(seqs) / sparse_n
    in_part = picks < sparse_n
    found, _ = sp.search_segments([q for q, keep in zip(query_seqs, in_part) if keep], 1)
    p50, p99, mem = np.percentile(ms, 50), np.percentile(ms, 99), sp.nbytes / 2**20
    first = float(np.mean(found[:, 0] == picks[in_part]))
    rows.append([f"k-mer index (k {sp.cfg.k})", f"{sparse_n:,}", build_s, mem, p50, p99, "", first])
    rows.append([f"k-mer index x{scale:g} (linear estimate)", f"{n:,}", build_s * scale, mem * scale, p50 * scale,
                 p99 * scale, "", ""])  # fmt: skip
    return table(header, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model URI or checkpoint (default: untrained default-config model)")
    p.add_argument("--parts", default="depth,quality,scale,speed")
    p.add_argument("--quick", action="store_true", help="fewer queries (a smoke run, not for the docs)")
    p.add_argument("--sets", default="", help="quality: only these data sets (comma-separated names)")
    p.add_argument("--threads", type=int, default=2, help="torch and faiss threads")
    p.add_argument("--scale-n", type=float, default=1e6)
    p.add_argument("--scale-queries", type=int, default=200)
    p.add_argument("--sparse-n", type=float, default=1e5)
    p.add_argument("--hnsw", action="store_true", help="also build HNSW at --scale-n (slow on 2 cores)")
    p.add_argument("--ivf", default="0:8,16,32,64", help="IVF lists and nprobes: NLIST:P,P;NLIST:P (0 = default)")
    p.add_argument("--work", default="/tmp/gene-ae-search-bench", help="scratch directory for the indexes")
    p.add_argument("--out", help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    encoder, what = make_encoder(args.model) if {"depth", "quality", "speed"} & set(parts) else (None, "")
    command = "python benchmarks/search_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = [f"`{command}` on {platform.node()} ({os.cpu_count()} CPUs, {args.threads} threads); model: {what}"]
    if "depth" in parts:
        out.append(
            "### Re-ranking depth, chosen on chimp genes\n\n" + depth_table(encoder, work, 50 if args.quick else 200)
        )
    if "quality" in parts:
        sets = [x for x in args.sets.split(",") if x]
        out.append("### Recall@1 by stage and data set\n\n" + quality_table(encoder, work, args.quick, sets))
    if "speed" in parts:
        out.append("### Embedding speed, same run\n\n" + speed_table(encoder))
    if "scale" in parts:
        n = int(args.scale_n)
        table_ = scale_table(n, args.scale_queries, int(args.sparse_n), args.hnsw, args.ivf, work)
        out.append(f"### Scale: {n:,} vectors\n\n" + table_)
    text = "\n\n".join(out) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
