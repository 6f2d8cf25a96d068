"""A genome against genomes (issue 32): `gene-ae search --outfmt ani`'s ANI against a direct alignment of each pair.

    python benchmarks/genome_ani.py grow --work DIR      # DIR/query.fa, DIR/subjects.fa (grown data)
    gene-ae embed --model CKPT --input DIR/subjects.fa --out DIR/index --feature-column assembly
    /usr/bin/time -v gene-ae search --index DIR/index DIR/query.fa --outfmt ani --subject-genome assembly \\
        -k 25 --min-af 0 --out DIR/ani.tsv
    python benchmarks/genome_ani.py check --work DIR     # each pair's error, in ANI points

`grow`: E. coli K-12 MG1655 (4.64 Mb, the shared data) is the query genome, in 5 contigs; the collection is 20
assemblies mutated 1-10 % (gene_ae.core.mutate: substitutions and 1-3 base indels) in 100 kb chunks of the genome,
each cut into 4 contigs at random places (`>m5.3_c0 assembly=m5.3`), plus S. aureus N315 (unrelated). `check`:
each assembly's identity from edlib's global alignment chunk by chunk (the chunks' alignments laid end to end are
an alignment of the pair), matching columns / alignment columns, against the ani column.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
from pathlib import Path

import numpy as np

from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from shard_tools.alphabet import decode

DATA = Path(os.environ.get("GENE_AE_SHARED_DATA", "/work/shared/data"))
CHUNK = 100_000
CUTS = (0, 900_000, 2_100_000, 2_900_000, 3_800_000)  # the query genome's contigs


def genome(name: str) -> np.ndarray:
    return next(iter(iter_input(DATA / "bacteria" / name))).tokens


def grow(work: Path, seed: int = 42) -> None:
    ec, sa = genome("E.Coli__MG1655-K12.fasta.gz"), genome("S.Aureus__N315.fasta.gz")
    work.mkdir(parents=True, exist_ok=True)
    cuts = [*CUTS, ec.size]
    with open(work / "query.fa", "w") as f:
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            f.write(f">ecoli_c{i}\n{decode(ec[a:b])}\n")
    rng = np.random.default_rng(seed)
    with open(work / "subjects.fa", "w") as f:
        for d in np.linspace(0.01, 0.10, 20):
            name = f"m{100 * d:.1f}"
            parts = [mutate(ec[a : a + CHUNK], float(d), rng) for a in range(0, ec.size, CHUNK)]
            np.save(work / f"{name}.lengths.npy", np.array([p.size for p in parts]))
            whole = np.concatenate(parts)
            sub = sorted(rng.choice(np.arange(200_000, whole.size - 200_000), 3, replace=False).tolist())
            for i, (a, b) in enumerate(zip([0, *sub], [*sub, whole.size])):
                f.write(f">{name}_c{i} assembly={name}\n{decode(whole[a:b])}\n")
        f.write(f">saureus assembly=saureus\n{decode(sa)}\n")


def direct_identity(query: np.ndarray, chunks: list[np.ndarray]) -> float:
    """Matching columns / alignment columns of edlib's global alignments of the query's chunks to the copies."""
    import edlib

    matches = columns = 0
    for i, copy in enumerate(chunks):
        cigar = edlib.align(decode(query[i * CHUNK : (i + 1) * CHUNK]), decode(copy), mode="NW", task="path")["cigar"]
        for n, op in re.findall(r"(\d+)([=XID])", cigar):
            columns += int(n)
            matches += int(n) if op == "=" else 0
    return matches / columns


def check(work: Path) -> None:
    ec = genome("E.Coli__MG1655-K12.fasta.gz")
    contigs: dict[str, list[np.ndarray]] = {}
    for r in iter_input(work / "subjects.fa"):
        contigs.setdefault(r.id.rsplit("_c", 1)[0], []).append(r.tokens)
    with open(work / "ani.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    got = {r["subject_genome"]: r for r in rows}
    errors = []
    for name in sorted((n for n in contigs if n.startswith("m")), key=lambda n: float(n[1:])):
        whole = np.concatenate(contigs[name])
        ends = np.cumsum(np.load(work / f"{name}.lengths.npy"))
        direct = 100 * direct_identity(ec, np.split(whole, ends[:-1]))
        row = got[name]
        errors.append(float(row["ani"]) - direct)
        print(f"{name}\tdirect {direct:.3f}\tani {row['ani']}\terror {errors[-1]:+.3f}\tquery AF {row['query_af']}\t"
              f"subject AF {row['subject_af']}\tregions {row['regions']}", flush=True)  # fmt: skip
    print(f"largest |error| {max(abs(e) for e in errors):.3f} points, mean {np.mean(errors):+.3f}")
    print("order:", " ".join(r["subject_genome"] for r in rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("grow", "check"))
    p.add_argument("--work", type=Path, required=True)
    args = p.parse_args()
    grow(args.work) if args.step == "grow" else check(args.work)


if __name__ == "__main__":
    main()
