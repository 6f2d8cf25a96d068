"""A genome against genomes (issue 32): `gene-ae search --outfmt ani`'s ANI against a direct alignment of each pair.

    python benchmarks/genome_ani.py grow --work DIR      # DIR/query.fa, DIR/subjects.fa (grown data)
    gene-ae embed --model CKPT --input DIR/subjects.fa --out DIR/index --feature-column assembly
    /usr/bin/time -v gene-ae search --index DIR/index DIR/query.fa --outfmt ani --subject-genome assembly \\
        -k 25 --min-af 0 --out DIR/ani.tsv
    python benchmarks/genome_ani.py check --work DIR     # each pair's error, in ANI points

    python benchmarks/genome_ani.py real --work DIR      # real assemblies instead: the shared mpox genomes
    (embed and search as above)
    python benchmarks/genome_ani.py check-real --work DIR

`grow`: E. coli K-12 MG1655 (4.64 Mb, the shared data) is the query genome, in 5 contigs; the collection is 20
assemblies mutated 1-10 % (gene_ae.core.mutate: substitutions and 1-3 base indels) in 100 kb chunks of the genome,
each cut into 4 contigs at random places (`>m5.3_c0 assembly=m5.3`), plus S. aureus N315 (unrelated). `check`:
each assembly's identity from edlib's global alignment chunk by chunk (the chunks' alignments laid end to end are
an alignment of the pair), matching columns / alignment columns, against the ani column.

`real`: the shared data's mpox genomes of 60 kb and more with at most 1 % N (real assemblies of clades I and II,
one record each): the first without N is the query, the others the collection (`>ID assembly=ID`), with S. aureus
N315 as an unrelated one. `check-real`: each pair's identity over minimap2's alignments (mappy, asm20, primary;
indels over LONG_GAP bases unaligned), against the ani column. Not edlib's global alignment, as `check` uses:
real genomes differ by kilobase indels and tandem-repeat arrays near their ends, where a unit-cost global alignment
scatters mismatches (96.3 % for a clade I / II pair that minimap2 aligns at 99.3 %).
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
LONG_GAP = 50  # check-real: an indel longer than this is unaligned sequence, not alignment columns
MAX_N = 0.01  # real assemblies with more N (masked bases) are left out: an alignment counts each N a mismatch
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


def real(work: Path, min_length: int = 60_000) -> None:
    mpox = DATA / "viruses" / "mpox_nextclade_examples.fasta.gz"
    masked = {r.id: decode(r.tokens).count("N") / max(r.tokens.size, 1) for r in iter_input(mpox)}  # N's share
    genomes = [r for r in iter_input(mpox) if r.tokens.size >= min_length and masked[r.id] <= MAX_N]
    print("left out (under 60 kb, or over 1 % N):", ", ".join(sorted(set(masked) - {r.id for r in genomes})))
    query = next(r for r in genomes if masked[r.id] == 0)
    work.mkdir(parents=True, exist_ok=True)
    (work / "query.fa").write_text(f">{query.id}\n{decode(query.tokens)}\n")
    with open(work / "subjects.fa", "w") as f:
        for r in (g for g in genomes if g is not query):
            f.write(f">{r.id} assembly={r.id}\n{decode(r.tokens)}\n")
        f.write(f">saureus assembly=saureus\n{decode(genome('S.Aureus__N315.fasta.gz'))}\n")


def minimap2_identity(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(matching bases / alignment columns, query bases aligned) over minimap2's primary alignments (mappy,
    asm20) of a against b, an indel of over LONG_GAP bases not columns: ANI reads identity over what aligns and a
    kilobase indel as outside the identity's columns, not as thousands of mismatching columns."""
    import mappy

    hits = [h for h in mappy.Aligner(seq=decode(b), preset="asm20").map(decode(a)) if h.is_primary]
    long_gaps = sum(n for h in hits for n, op in h.cigar if op in (1, 2) and n > LONG_GAP)  # 1 I, 2 D
    columns = sum(h.blen for h in hits) - long_gaps
    return sum(h.mlen for h in hits) / max(columns, 1), sum(h.q_en - h.q_st for h in hits)


def check_real(work: Path) -> None:
    query = next(iter(iter_input(work / "query.fa"))).tokens
    with open(work / "ani.tsv") as f:
        got = {r["subject_genome"]: r for r in csv.DictReader(f, delimiter="\t")}
    errors = []
    for r in iter_input(work / "subjects.fa"):
        if r.id == "saureus":
            print(f"saureus\tani {got.get('saureus', {}).get('ani', 'not reported')}")
            continue
        identity, aligned = minimap2_identity(query, r.tokens)
        row = got.get(r.id)
        if row is None:
            print(f"{r.id}\tminimap2 {100 * identity:.3f}\tnot reported")
            errors.append(float("inf"))
            continue
        errors.append(float(row["ani"]) - 100 * identity)
        print(f"{r.id}\tminimap2 {100 * identity:.3f} (query AF {100 * aligned / query.size:.2f})\tani {row['ani']}\t"
              f"error {errors[-1]:+.3f}\tquery AF {row['query_af']}\tsubject AF {row['subject_af']}\t"
              f"regions {row['regions']}", flush=True)  # fmt: skip
    print(f"largest |error| {max(abs(e) for e in errors):.3f} points, mean {np.mean(errors):+.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("grow", "check", "real", "check-real"))
    p.add_argument("--work", type=Path, required=True)
    args = p.parse_args()
    {"grow": grow, "check": check, "real": real, "check-real": check_real}[args.step](args.work)


if __name__ == "__main__":
    main()
