"""Cut windows of 20-100 kb from long genomes into a FASTA: the long-sequence evaluation set.

Usage: python benchmarks/cut_windows.py OUT.fa GENOME.fa.gz [GENOME ...] [--n 120] [--seed 0]
Windows are non-overlapping, lengths uniform in [--min, --max], drawn per genome in proportion to its size.
"""

from __future__ import annotations

import argparse

import numpy as np

from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig, read_records


def cut(records: list[tuple[str, np.ndarray]], n: int, lo: int, hi: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """n non-overlapping windows of lo..hi bases, drawn per record in proportion to its length: (id, tokens)."""
    rng = np.random.default_rng(seed)
    total = sum(t.size for _, t in records)
    out = []
    for rid, tokens in records:
        want = round(n * tokens.size / total)
        lengths = rng.integers(lo, hi + 1, size=want)
        slack = tokens.size - int(lengths.sum())
        if slack < 0:
            raise SystemExit(f"{rid}: {tokens.size:,} bases cannot hold {want} windows of up to {hi:,}")
        gaps = np.diff(np.sort(rng.integers(0, slack + 1, size=want)), prepend=0)
        start = 0
        for gap, length in zip(gaps, lengths):
            start += int(gap)
            out.append((f"{rid}:{start + 1}-{start + int(length)}", tokens[start : start + int(length)]))
            start += int(length)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("genomes", nargs="+")
    p.add_argument("--n", type=int, default=120, help="windows in all")
    p.add_argument("--min", type=int, default=20_000)
    p.add_argument("--max", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    records = [(r.id, r.tokens) for path in args.genomes for r in read_records(path, ReaderConfig())]
    with open(args.out, "w") as out:
        for rid, tokens in cut(records, args.n, args.min, args.max, args.seed):
            out.write(f">{rid}\n{decode(tokens)}\n")


if __name__ == "__main__":
    main()
