"""Does a user's label, used as a training signal, make the vector rank a query's own group first?

    .venv/bin/python benchmarks/feature_signal.py [--steps 300] [--weight 0.5] [--quick] [--out FILE]

The shared 16S set (rrna16s/ten_16s.100.fa.gz, at most 10 genes a genus, the taxonomy in each header) is split
by taxonomic family (308 of them), seeded by a hash of the name: 80 % of the families train, the other 20 %
are held apart and never seen in training, so the question is whether what the signal teaches carries over
to groups it never saw. The training families are written as a table (id, sequence, family), sharded by
`shard-fasta --feature-column family` and trained on twice through `python -m gene_ae.train`, with the same
config, steps and seed:

- sequence: the default model, no features;
- signal: the same with `--set model.features=family:categorical:signal:W`: windows of records that share a
  family are extra positives of a supervised-contrastive term of weight W (the vector takes no feature).

Each checkpoint then embeds the held-apart families (whole records, Encoder.embed_tokens). Reported:
"seen" precision@10, queries = the shards' val split (records never trained on, of families trained on)
against every record of the trained families, for the in-distribution reading;
precision@10 of same-family neighbours, leave-one-out, over records whose family has at least two held-apart
members (the most a query can score is min(members - 1, 10) / 10, averaged as "ceiling");
recall@1 of mutated copies (10 / 20 / 30 %) of the same held-apart records against them (the sequence-only
task the signal must not spoil); and the canonical 5- and 7-mer profiles hashed to the vector's size and
exact 7-mer counts on the same records, for reference. The weight is the config default: nothing here is
chosen on these held-apart families.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import emit
from study import finished_checkpoint, train_cli

DATA = Path(os.environ.get("GENE_AE_SHARED_DATA", "/work/shared/data"))
REPO = Path(__file__).resolve().parents[1]
TAX = re.compile(r";tax=.*?f:([^;,]+)")
DIVERGENCES = (0.10, 0.20, 0.30)


def read_16s() -> list[tuple[str, str, str]]:
    """(id, sequence, family) of every 16S record with a taxonomic family."""
    out, rid, group, seq = [], None, None, []
    with gzip.open(DATA / "rrna16s" / "ten_16s.100.fa.gz", "rt") as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                if rid and group:
                    out.append((rid, "".join(seq), group))
                m = TAX.search(line)
                rid, group, seq = line[1:].split(";")[0], m.group(1) if m else None, []
            elif line:
                seq.append(line)
    if rid and group:
        out.append((rid, "".join(seq), group))
    return out


def held_apart(group: str, fraction: float = 0.2) -> bool:
    """A group's side, by a hash of its name: the same split on every run and machine."""
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def precision_at(vectors: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float]:
    """Leave-one-out same-label precision@k over queries whose label has another member; (precision, ceiling)."""
    from gene_ae.core.topk import top_k

    counts = {g: int((labels == g).sum()) for g in set(labels.tolist())}
    queries = np.array([i for i, g in enumerate(labels) if counts[g] > 1])
    sims = vectors[queries] @ vectors.T
    sims[np.arange(len(queries)), queries] = -np.inf
    idx, _ = top_k(sims, k)
    precision = float(np.mean(labels[idx] == labels[queries][:, None]))
    ceiling = float(np.mean([min(counts[labels[q]] - 1, k) / k for q in queries]))
    return precision, ceiling


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps of each model (the demo's budget)")
    p.add_argument("--weight", type=float, default=0.5, help="the signal's loss weight (model.features default)")
    p.add_argument("--quick", action="store_true", help="tiny models and 20 steps: a smoke run, not for the docs")
    p.add_argument("--work", default="", help="scratch directory (default: a temporary one)")
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)

    from gene_ae.evaluate.baselines import hashed_profiles, kmer_matrix
    from gene_ae.evaluate.metrics import mutation_recall
    from gene_ae.model.encoder import Encoder
    from shard_tools.alphabet import encode

    work = Path(args.work or tempfile.mkdtemp(prefix="feature-signal-"))
    work.mkdir(parents=True, exist_ok=True)
    records = read_16s()
    train_rows = [r for r in records if not held_apart(r[2])]
    held = [r for r in records if held_apart(r[2])]
    table = work / "train.tsv"
    table.write_text("id\tsequence\tfamily\n" + "".join(f"{i}\t{s}\t{g}\n" for i, s, g in train_rows))
    shards = work / "shards"
    if not (shards / "manifest.json").exists():
        subprocess.run([str(Path(sys.executable).parent / "shard-fasta"), "--quiet", "--feature-column", "family",
                        "--id-column", "id", str(table), str(shards)], check=True)  # fmt: skip
    quick = ["--config", str(REPO / "tests" / "configs" / "tiny.toml")] if args.quick else []
    steps = 20 if args.quick else args.steps
    runs = {
        "sequence": [],
        "signal": ["--set", f"model.features=family:categorical:signal:{args.weight:g}"],
    }
    tokens = [encode(s) for _, s, _ in held]
    labels = np.array([g for _, _, g in held], dtype=object)
    from shard_tools import read_shards

    val_ids = {rid for rid, _, _ in read_shards(shards, "val")}
    seen_tokens = [encode(s) for _, s, _ in train_rows]
    seen_labels = np.array([g for _, _, g in train_rows], dtype=object)
    seen_queries = np.array([i for i, (rid, _, _) in enumerate(train_rows) if rid in val_ids])

    def seen_precision(vecs: np.ndarray) -> float:
        from gene_ae.core.topk import top_k

        sims = vecs[seen_queries] @ vecs.T
        sims[np.arange(len(seen_queries)), seen_queries] = -np.inf
        idx, _ = top_k(sims, 10)
        return float(np.mean(seen_labels[idx] == seen_labels[seen_queries][:, None]))

    rows, dim = [], None
    for name, extra in runs.items():
        done = finished_checkpoint(work, name)  # a run this --work finished before is reused (minutes NaN)
        ckpt, seconds = (done, float("nan")) if done else train_cli(shards, work, name, steps, quick + extra)
        minutes = seconds / 60
        enc = Encoder.load(str(ckpt))
        dim = enc.dim
        vecs = enc.embed_tokens(tokens)
        prec, ceiling = precision_at(vecs, labels, 10)
        recall = mutation_recall(enc.embed_tokens, tokens, DIVERGENCES, seed=0)["recall@1"]
        seen = seen_precision(enc.embed_tokens(seen_tokens))
        rows.append((f"gene-ae {name}", "-" if minutes != minutes else f"{minutes:.1f}", seen, prec, ceiling, *recall))
    for label, embed in (
        (f"5-mer profile @{dim}", lambda s: hashed_profiles(s, 5, dim)),
        (f"7-mer profile @{dim}", lambda s: hashed_profiles(s, 7, dim)),
        ("exact 7-mer counts", lambda s: kmer_matrix(s, 7)),
    ):

        def dense(seqs, embed=embed):
            m = embed(list(seqs))
            return m.toarray() if hasattr(m, "toarray") else m

        prec, ceiling = precision_at(dense(tokens), labels, 10)
        recall = mutation_recall(dense, tokens, DIVERGENCES, seed=0)["recall@1"]
        rows.append((label, "-", seen_precision(dense(seen_tokens)), prec, ceiling, *recall))
    header = ["method", "train min", "seen families precision@10", "held-apart precision@10", "ceiling"]
    header += [f"recall@1 {d:.0%}" for d in DIVERGENCES]
    lines = [
        f"16S, {len(train_rows):,} records of {len({r[2] for r in train_rows}):,} families trained on; "
        f"{len(held):,} records of {len(set(labels.tolist())):,} held-apart families scored; {steps} steps each",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        lines.append("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in row) + " |")
    text = "\n".join(lines)
    return emit(text + "\n", args.out)


if __name__ == "__main__":
    raise SystemExit(main())
