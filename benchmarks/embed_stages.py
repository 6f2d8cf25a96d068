"""Where `gene-ae embed` spends its time, stage by stage, and what each part of the index costs on disk (issue 18).

    .venv/bin/python benchmarks/embed_stages.py --model CKPT --input coll.fa --out IDX [--threads 2] [embed flags]

Runs `gene-ae embed --model CKPT --input coll.fa --out IDX --overwrite [flags]` in this process under cProfile
twice over: once timed by the wall clock, once by this process's CPU time (both torch threads counted), so a
machine shared with other work still gives a CPU split that means something. Prints one markdown table:
seconds per stage (wall and CPU, each stage's own functions and what they call), records/s and bases/s of the
whole command, peak RSS, and the bytes of each part of the index written, per base. Unknown flags are
passed on to `gene-ae embed` (e.g. --kmer-scaled 4 --vector-codec sq8).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import time
from pathlib import Path

# Stage -> the functions (file name, function name) whose cumulative time it is; nested ones are not added twice.
STAGES = {
    "read input": [("records.py", "iter_input")],
    "sequence store": [("seqstore.py", "add"), ("seqstore.py", "close")],
    "embed (records + windows)": [("build.py", "spans"), ("build.py", "_embed")],
    "k-mer counting": [("kmer_index.py", "add")],
    "k-mer finish (transpose, gaps)": [("kmer_index.py", "finish")],
    "record vectors (faiss, npy)": [("directory.py", "record_vectors")],
    "window vectors (faiss)": [("directory.py", "window_vectors")],
    "k-mer index write": [("directory.py", "kmers")],
    "index.json (sha256 of every part)": [("directory.py", "finish")],
}


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each stage's functions in a profile."""
    out = dict.fromkeys(STAGES, 0.0)
    for (path, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for stage, funcs in STAGES.items():
            if (Path(path).name, name) in funcs:
                out[stage] += cum
    return out


def profiled(argv: list[str], timer) -> tuple[pstats.Stats, float]:
    from gene_ae.cli import main

    prof = cProfile.Profile(timer)
    start = time.perf_counter()
    try:
        prof.runcall(main, argv)
    except SystemExit as exc:  # the CLI exits with its code
        if exc.code:
            raise
    return pstats.Stats(prof), time.perf_counter() - start


def part_bytes(index: Path) -> dict[str, int]:
    """Bytes of each file of the index; kmers.npz also split into its arrays (stored sizes)."""
    import zipfile

    out: dict[str, int] = {}
    for p in sorted(index.rglob("*")):  # every shard's parts, added up by name
        if p.is_file():
            out[p.name] = out.get(p.name, 0) + p.stat().st_size
    with zipfile.ZipFile(index / "kmers.npz") as z:
        for info in z.infolist():
            out[f"  kmers.npz: {info.filename.removesuffix('.npy')}"] = info.compress_size
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2, help="torch threads (torch.set_num_threads)")
    args, extra = p.parse_known_args(argv)
    import torch

    from gene_ae.core.records import iter_input

    torch.set_num_threads(args.threads)
    n = bases = 0
    for rec in iter_input(args.input):
        n, bases = n + 1, bases + int(rec.tokens.size)
    cmd = ["embed", "--model", args.model, "--input", args.input, "--out", args.out, "--overwrite", *extra]
    wall_stats, wall = profiled(cmd, time.perf_counter)
    cpu_stats, _ = profiled(cmd, time.process_time)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls, cpus = stage_seconds(wall_stats), stage_seconds(cpu_stats)
    print(f"`gene-ae {' '.join(cmd)}` ({n:,} records, {bases:,} bases, {args.threads} torch threads, "
          f"load average {os.getloadavg()[0]:.1f}): {wall:.1f} s wall, {n / wall:,.0f} records/s, "
          f"{bases / wall / 1e6:.2f} M bases/s; peak RSS {peak_mib:,.0f} MiB\n")  # fmt: skip
    print("| stage | wall s | CPU s |\n|---|---:|---:|")
    for stage in STAGES:
        print(f"| {stage} | {walls[stage]:.1f} | {cpus[stage]:.1f} |")
    print(f"| whole command | {wall:.1f} | {cpu_stats.total_tt:.1f} |\n")  # type: ignore[attr-defined]
    print("| part | bytes | bytes / base |\n|---|---:|---:|")
    parts = part_bytes(Path(args.out))
    for name, size in parts.items():
        print(f"| {name} | {size:,} | {size / bases:.3f} |")
    total = sum(v for k, v in parts.items() if not k.startswith(" "))
    print(f"| all files | {total:,} | {total / bases:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
