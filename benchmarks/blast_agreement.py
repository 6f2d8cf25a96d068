"""gene-ae's BLAST tabular columns against blastn's on the same query / subject pairs (issue 35), as one table.

    python benchmarks/blast_agreement.py --model CKPT --collection genes.fa [--queries 50] [--divergence 0.1]
                                         [--work /tmp/blast-agreement] [--seed 0]

Builds a gene-ae index and a BLAST database of the collection, mutates --queries records at --divergence
(gene_ae.core.mutate, substitutions and indels), searches both (`gene-ae search --outfmt blast6 -k 1`,
`blastn -task blastn -outfmt 6`, 2 threads), and for every query whose source both tools report, compares the
source's first HSP column by column against the targets of issue 35: pident within 2 points, mismatch and
gapopen within 20 % (or 2), query and subject coordinates within 10 bases, bitscore within 20 % and evalue
within a factor of 10^3. Prints the fraction of pairs meeting each, and gene-ae's time with and without the
statistics (`gene-ae search` with the default --outfmt tsv computes them too: the cost is the tracing).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = ("pident", "length", "mismatch", "gapopen", "qstart", "qend", "sstart", "send", "evalue", "bitscore")


def read_tabular(text: str) -> dict[tuple[str, str], dict[str, float]]:
    """BLAST -outfmt 6 rows: the first HSP of each (query, subject) pair, its columns as numbers."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) >= 12 and (f[0], f[1]) not in out:
            out[(f[0], f[1])] = dict(zip(COLUMNS, map(float, f[2:12])))
    return out


def agreement(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, bool]:
    """Which of issue 35's targets one pair meets."""

    def within(name: str, frac: float, floor: float) -> bool:
        return abs(ours[name] - theirs[name]) <= max(frac * abs(theirs[name]), floor)

    e_ours, e_theirs = (max(x["evalue"], 1e-300) for x in (ours, theirs))
    return {
        "pident": abs(ours["pident"] - theirs["pident"]) <= 2.0,
        "mismatch": within("mismatch", 0.2, 2),
        "gapopen": within("gapopen", 0.2, 2),
        "coordinates": all(abs(ours[c] - theirs[c]) <= 10 for c in ("qstart", "qend", "sstart", "send")),
        "bitscore": within("bitscore", 0.2, 0),
        "evalue": abs(math.log10(e_ours) - math.log10(e_theirs)) <= 3,
    }


def compare(ours_text: str, blast_text: str, truth: dict[str, str]) -> tuple[dict[str, float], int]:
    """(fraction of pairs meeting each target, pairs compared): the pairs are (query, its source) that both
    outputs hold."""
    ours, theirs = read_tabular(ours_text), read_tabular(blast_text)
    pairs = [(q, s) for q, s in truth.items() if (q, s) in ours and (q, s) in theirs]
    met = [agreement(ours[p], theirs[p]) for p in pairs]
    names = met[0].keys() if met else ()
    return {n: float(np.mean([m[n] for m in met])) for n in names}, len(pairs)


def statistics_cost(index: Path, queries: Path, repeats: int = 3) -> tuple[float, float]:
    """(ms a query with the traced alignments and statistics, ms without): the default search, in process, best of
    `repeats` each."""
    from gene_ae.core.records import iter_input
    from gene_ae.search.engine import SearchConfig
    from gene_ae.search.searcher import Searcher

    searcher = Searcher.open(index)
    recs = list(iter_input(queries))
    best = {}
    for trace in (True, False):
        cfg = SearchConfig(k=10, trace=trace)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            searcher.search(recs, cfg)
            times.append(time.perf_counter() - start)
        best[trace] = 1e3 * min(times) / len(recs)
    return best[True], best[False]


def main(argv: list[str] | None = None) -> int:
    from gene_ae.core.mutate import mutate
    from gene_ae.core.records import iter_input
    from shard_tools.alphabet import decode

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="gene-ae model: a checkpoint directory or models:/ URI")
    p.add_argument("--collection", required=True, help="FASTA of the subjects")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--divergence", type=float, default=0.1)
    p.add_argument("--work", default="/tmp/blast-agreement")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    records = [r for r in iter_input(args.collection) if r.tokens.size]
    (work / "collection.fa").write_text("".join(f">s{i}\n{decode(r.tokens)}\n" for i, r in enumerate(records)))
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(records), size=min(args.queries, len(records)), replace=False)
    truth = {f"q{j}": f"s{i}" for j, i in enumerate(picks)}
    copies = [mutate(records[i].tokens, args.divergence, rng) for i in picks]
    (work / "queries.fa").write_text("".join(f">q{j}\n{decode(c)}\n" for j, c in enumerate(copies)))
    gene_ae = str(Path(sys.executable).with_name("gene-ae"))
    idx = work / "index"
    if not (idx / "index.json").is_file():
        subprocess.run([gene_ae, "embed", "--model", args.model, "--input", work / "collection.fa", "--out", idx],
                       check=True)  # fmt: skip
    subprocess.run(["makeblastdb", "-in", work / "collection.fa", "-dbtype", "nucl", "-out", work / "db"],
                   check=True, capture_output=True)  # fmt: skip
    ours = subprocess.run([gene_ae, "search", "--index", idx, work / "queries.fa", "-k", "1", "--outfmt", "blast6"],
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    blast = subprocess.run(["blastn", "-task", "blastn", "-query", work / "queries.fa", "-db", work / "db",
                            "-outfmt", "6", "-max_target_seqs", "5", "-num_threads", "2"],
                           check=True, capture_output=True, text=True).stdout  # fmt: skip
    fractions, n = compare(ours, blast, truth)
    cost = statistics_cost(idx, work / "queries.fa")
    print(f"`python benchmarks/blast_agreement.py {' '.join(argv or sys.argv[1:])}`: {n} query / source pairs of "
          f"{len(truth)} ({args.divergence:.0%} divergence), {len(records):,} subjects\n")  # fmt: skip
    print("| target | pairs meeting it |\n|---|---|")
    for name, frac in fractions.items():
        print(f"| {name} | {frac:.2f} |")
    print(f"\nsearch -k 10 in process: {cost[0]:.1f} ms a query with the statistics, {cost[1]:.1f} without "
          f"({100 * (cost[0] / cost[1] - 1):.0f} % more)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
