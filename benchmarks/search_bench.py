"""Search that finds what alignment finds: quality per data set and stage, the re-ranking depth, and speed.

    python benchmarks/search_bench.py [--model URI] [--parts depth,quality,speed] [--quick] [--threads 2]
                                      [--out FILE]

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
3. speed: vectors (or sketches) per second from tokens for gene-ae, the 7-mer profile hashed to the model's
   size, exact 7-mer counts and sourmash (k 21, scaled 1), on dog genes and mpox genomes, best of 3.

Search at scale is measured on real collections: benchmarks/peer_bench.py (--n 1000000, --real) and the
index choices on its collection, benchmarks/scale_choices.py.

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
from common import emit

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
    """Every query aligned against every record, best identity first (gene_ae.evaluate.metrics)."""
    from gene_ae.evaluate.metrics import exhaustive_alignment

    return Timed(partial(exhaustive_alignment, seqs))


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


# ------------------------------------------------------------------------------------------------- speed


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model URI or checkpoint (default: untrained default-config model)")
    p.add_argument("--parts", default="depth,quality,speed")
    p.add_argument("--quick", action="store_true", help="fewer queries (a smoke run, not for the docs)")
    p.add_argument("--sets", default="", help="quality: only these data sets (comma-separated names)")
    p.add_argument("--threads", type=int, default=2, help="torch and faiss threads")
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
    encoder, what = make_encoder(args.model)
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
    text = "\n\n".join(out) + "\n"
    return emit(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
