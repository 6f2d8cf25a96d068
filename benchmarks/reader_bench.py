"""Time shard_tools.inputs.read_records alone (parse + normalise), the input stage of shard-fasta.

    .venv/bin/python benchmarks/reader_bench.py FILE... [--repeat 3]

Prints, per file, the best of --repeat runs: records, bases, seconds and MB/s of the file as stored.
With no FILE it times every FASTA/FASTQ under ../shared/data (or the bundled data/) plus a synthetic FASTQ of
100,000 reads of 150 bases, written once to a temporary folder.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from shard_tools.inputs import ReaderConfig, read_records

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SUFFIXES = (".fa", ".fasta", ".fq", ".fastq", ".fa.gz", ".fasta.gz", ".fq.gz", ".fastq.gz")


def synthetic_fastq(path: Path, reads: int = 100_000, length: int = 150) -> Path:
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(reads):
            seq = "".join(rng.choices("ACGT", k=length))
            f.write(f"@read{i} sample=1\n{seq}\n+\n{'I' * length}\n")
    return path


def time_file(path: Path, repeat: int) -> tuple[int, int, float]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        n = bases = 0
        for rec in read_records(path, ReaderConfig()):
            n += 1
            bases += int(rec.tokens.size)
        best = min(best, time.perf_counter() - start)
    return n, bases, best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files
        if not files:
            root = SHARED if SHARED.is_dir() else REPO / "data"
            files = sorted(f for f in root.rglob("*") if f.name.lower().endswith(SUFFIXES))
            files.append(synthetic_fastq(Path(tmp) / "synthetic_100k_x150.fq"))
        print(f"{'file':<48} {'records':>8} {'bases':>12} {'s':>7} {'MB/s':>7}")
        for path in files:
            n, bases, seconds = time_file(path, args.repeat)
            mbs = path.stat().st_size / 1e6 / seconds
            print(f"{path.name:<48} {n:>8,} {bases:>12,} {seconds:>7.3f} {mbs:>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
