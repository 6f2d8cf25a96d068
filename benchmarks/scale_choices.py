"""Choices for search at scale, made on val queries of a peer_bench collection (issue 18).

    python benchmarks/scale_choices.py --index /tmp/peer-bench/n1000000-f8-s0/gene-ae/index \
        [--variants base,src:sparse,ivf:1100:16,k:12:24] [--queries 50] [--collection-seed 0]

The collection is one `benchmarks/peer_bench.py` grew (its index built by `gene-ae embed`). Val queries are
mutated copies (10 / 20 / 30 %, --queries each, seed 101) of members of families whose founder is a gene of
the training data (chimp genes and 16S: the shared data's dog genes are the evaluation set), so that a choice
made here is not made on peer_bench's own queries (seed 0, every family), which are then run once. Truth: the
source record, or one with the very same sequence.

Each variant changes one thing in memory (the index on disk is untouched) and runs the library search
(gene_ae.search.engine, defaults otherwise) over all queries, 2 threads (OMP_NUM_THREADS):
- base: the index as built;
- src:A+B: only these candidate lists (dense, windows, sparse);
- ivf:LISTS:NPROBE: the record vectors of every shard in a faiss IVF (8-bit codes) of LISTS lists;
  ivfw:LISTS:NPROBE: the window vectors too (ivfw:0:0: both as `gene-ae embed` builds them);
- k:K:BITS[:SOURCES]: the exact k-mer index rebuilt with k-mers of K bases in 2**BITS columns (cached
  under --work; every shard's records from the index's own sequence store);
- A/B: both changes (e.g. ivfw:0:0/k:11:22).
Prints one row per variant: ms a query (search only, the index open), recall@1 and @10 per divergence.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_bench  # noqa: E402  (the collection's recipe: its seeds and their order)

VAL_SEED = 101


def val_queries(coll, per_divergence: int, collection_seed: int):
    """(queries, their sources): members of families founded by training-data genes (peer_bench.grow draws
    founders as a permutation of seed_genes(), dog genes first)."""
    from gene_ae.core.records import iter_input
    from gene_ae.evaluate.metrics import mutated_copies
    from shard_tools.inputs import ReaderConfig

    sizes = [sum(1 for _ in iter_input(peer_bench.DATA / n, ReaderConfig(label_column=c) if c else None))
             for n, c in peer_bench.SEEDS]  # fmt: skip
    founder = np.random.default_rng(collection_seed).permutation(sum(sizes))
    family = np.array([int(e.id[1:6]) for e in coll.entries])  # peer_bench ids: fFFFFF_mMMMMM
    eligible = np.flatnonzero(founder[family] >= sizes[0])
    src = np.sort(np.random.default_rng(VAL_SEED).choice(eligible, per_divergence, replace=False))
    seqs = {int(i): coll.sequence(int(i)) for i in src}
    queries, truth = [], []
    for step, d in enumerate(peer_bench.DIVERGENCES):
        queries += mutated_copies(seqs, src, d, VAL_SEED, step)
        truth += src.tolist()
    return queries, truth, seqs


def ivf_of(matrix: np.ndarray, lists: int, nprobe: int):
    """An IVF of 8-bit codes over these vectors; lists 0: what `gene-ae embed` builds (exact flat up to
    vectors.FLAT_MAX, else vectors.ivf_lists lists searched with vectors.IVF_NPROBE)."""
    import faiss

    from gene_ae.index import vectors

    if lists == 0:
        if len(matrix) <= vectors.FLAT_MAX:
            return vectors.build_faiss(matrix, "flat", "sq8")[0]
        lists, nprobe = vectors.ivf_lists(len(matrix)), vectors.IVF_NPROBE
    quantizer = faiss.ScalarQuantizer.QT_8bit
    index = vectors.build_ivf(matrix, min(lists, max(1, len(matrix) // 39)), quantizer_type=quantizer)
    index.nprobe = nprobe
    return index


def rebuilt_kmers(shard, where: Path, k: int, bits: int):
    from gene_ae.index.kmer_index import KmerIndex, KmerIndexBuilder, KmerIndexConfig

    where.mkdir(parents=True, exist_ok=True)
    if not (where / KmerIndex.FILE).exists():
        builder = KmerIndexBuilder(KmerIndexConfig(k=k, bucket_bits=bits, segment=shard.kmers.cfg.segment))
        for r in range(len(shard.meta.entries)):
            builder.add(r, shard.sequences[r])
        builder.finish().save(where)
    return KmerIndex.load(where)


def apply(part: str, coll, cfg, work: Path):
    """One change of a variant (see the module docstring), made in memory; returns the search config."""
    name, *arg = part.split(":")
    if name == "src":
        cfg = replace(cfg, sources=tuple(arg[0].split("+")))
    elif name in ("ivf", "ivfw"):
        for shard in coll.shards:
            shard.dense = ivf_of(shard.dense.reconstruct_n(0, shard.dense.ntotal), int(arg[0]), int(arg[1]))
            if name == "ivfw" and shard.windows is not None:
                w = np.zeros((shard.windows.ntotal, shard.meta.dim), np.float32)
                shard.windows.reconstruct_n(0, shard.windows.ntotal, w)
                shard.windows = ivf_of(w, int(arg[0]), int(arg[1]))
    elif name == "k":
        for i, shard in enumerate(coll.shards):
            where = work / f"k{arg[0]}-b{arg[1]}" / f"s{i}"
            shard.kmers = rebuilt_kmers(shard, where, int(arg[0]), int(arg[1]))
        if len(arg) > 2:
            cfg = replace(cfg, sources=tuple(arg[2].split("+")))
    elif name != "base":
        raise SystemExit(f"unknown variant {part!r}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    from gene_ae.index.collection import Collection
    from gene_ae.search import engine
    from gene_ae.search.searcher import open_encoder

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="a gene-ae index of a peer_bench collection")
    p.add_argument("--variants", default="base,src:sparse,ivfw:1100:16", help="comma-separated (see above)")
    p.add_argument("--queries", type=int, default=50, help="val queries per divergence")
    p.add_argument("--collection-seed", type=int, default=0, help="peer_bench --seed the collection grew with")
    p.add_argument("--work", default="/tmp/scale-choices", help="cache of rebuilt k-mer indexes")
    args = p.parse_args(argv)
    coll = Collection.open(args.index)
    queries, truth, seqs = val_queries(coll, args.queries, args.collection_seed)
    _, embed = open_encoder(coll.shards[0], None, 64, args.index)
    built = [(s.dense, s.windows, s.kmers) for s in coll.shards]
    per = " / ".join(f"{round(100 * d)} %" for d in peer_bench.DIVERGENCES)
    print(f"| variant | prepare s | ms a query | recall@1 {per} | recall@10 {per} |\n|---|---|---|---|---|")
    for variant in args.variants.split(","):
        for shard, (dense, windows, kmers) in zip(coll.shards, built):
            shard.dense, shard.windows, shard.kmers = dense, windows, kmers
        cfg, start = engine.SearchConfig(), time.perf_counter()
        for part in variant.split("/"):  # a/b: both changes
            cfg = apply(part, coll, cfg, Path(args.work))
        prepared = time.perf_counter() - start
        engine.search(coll, queries[:3], embed, cfg)  # warm the page cache and the code paths
        start = time.perf_counter()
        hits = engine.search(coll, queries, embed, cfg)
        ms = 1000 * (time.perf_counter() - start) / len(queries)
        r1, r10 = [], []
        for d in range(len(peer_bench.DIVERGENCES)):
            rows = range(d * args.queries, (d + 1) * args.queries)
            top = [hits[j][0].subject if hits[j] else -1 for j in rows]
            r1.append(np.mean([t == truth[j] or (t >= 0 and np.array_equal(coll.sequence(t), seqs[truth[j]]))
                               for t, j in zip(top, rows)]))  # fmt: skip
            r10.append(np.mean([any(h.subject == truth[j] for h in hits[j][:10]) for j in rows]))
        print(f"| {variant} | {prepared:.0f} | {ms:.1f} | {' / '.join(f'{x:.2f}' for x in r1)} | "
              f"{' / '.join(f'{x:.2f}' for x in r10)} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
