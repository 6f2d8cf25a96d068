"""`make demo-features`: the user's own features, from a table to a filtered search (docs/FEATURES.md).

A table of the bundled chimpanzee genes with two features, `family` (the gene family, categorical) and `gc`
(GC content, numeric) -> shard-fasta keeps both -> training uses `family` as a signal (genes of one family
are extra positives) -> gene-ae embed stores both in the index -> gene-ae search filters on them
(--where) and shows them (--show-features). GENE_AE_DEMO_STEPS and GENE_AE_DEMO_CONFIG shorten it (tests).
"""

from __future__ import annotations

import gzip
import os
import sys
import time

from gene_ae.demo import DATA, REPO, run, setup, step

# The gene families of genefam/ (its README): class number -> name.
FAMILIES = ("GPCR", "tyrosine-kinase", "tyrosine-phosphatase", "synthetase", "synthase", "ion-channel",
            "transcription-factor")  # fmt: skip


def gc_content(seq: str) -> float:
    acgt = sum(seq.count(b) for b in "ACGT")
    return (seq.count("G") + seq.count("C")) / acgt if acgt else float("nan")


def write_table(src, out) -> int:
    """genefam's `sequence<TAB>class` as `id sequence family gc`: the kind of table a user brings."""
    with gzip.open(src, "rt", newline="") as f:
        rows = [line.rstrip("\r\n").split("\t") for line in f][1:]
    with open(out, "w") as f:
        f.write("id\tsequence\tfamily\tgc\n")
        for i, (seq, cls) in enumerate(rows):
            f.write(f"{src.name.split('_')[0]}{i}\t{seq}\t{FAMILIES[int(cls)]}\t{gc_content(seq):.3f}\n")
    return len(rows)


def main() -> int:
    started = time.time()
    demo = setup()
    features = ["--id-column", "id", "--feature-column", "family", "--feature-column", "gc:numeric"]
    step("1/4 a table of genes with two features (family: categorical, gc: numeric), sharded")
    n = write_table(DATA / "chimp_sample.tsv.gz", demo.out / "genes.tsv")
    print(f"  {n} chimpanzee genes -> {demo.out / 'genes.tsv'}")
    run(demo.bin_dir / "shard-fasta", *features, demo.out / "genes.tsv", demo.out / "shards", env=demo.env)
    step("2/4 train with the family as a training signal (supervised contrastive), not a vector input")
    steps = os.environ.get("GENE_AE_DEMO_STEPS", "")
    config = os.environ.get("GENE_AE_DEMO_CONFIG", str(REPO / "gene_ae" / "configs" / "demo.toml"))
    run(sys.executable, "-m", "gene_ae.train", "--data", demo.out / "shards", "--config", config,
        "--set", "model.features=family:categorical:signal:0.5", "--workers", "2", "--name", "features",
        "--storage", demo.out / "runs", "--register", "gene-ae-features", "--alias", "production",
        *(["--steps", steps] if steps else []), env=demo.env, cwd=demo.out)  # fmt: skip
    model = "models:/gene-ae-features@production"
    step("3/4 embed the table; the index keeps both features")
    demo.gene_ae("embed", "--model", model, "--input", demo.out / "genes.tsv", "--out", demo.out / "index",
                 *features)  # fmt: skip
    step("4/4 search dog genes among the chimp genes: all, then only kinases with gc > 0.45, features shown")
    queries = demo.out / "dog_queries.tsv"
    write_table(DATA / "dog_sample.tsv.gz", demo.out / "dog_all.tsv")
    with open(demo.out / "dog_all.tsv") as f:
        queries.write_text("".join(line for _, line in zip(range(5), f)))  # the header and 4 genes
    base = ("search", "--index", demo.out / "index", "--id-column", "id", queries, "-k", "3")
    demo.gene_ae(*base, "--show-features", "family,gc")
    demo.gene_ae(*base, "--where", 'family == "tyrosine-kinase" and gc > 0.45', "--show-features", "family,gc")
    print(f"\nDone in {(time.time() - started) / 60:.1f} min. docs/FEATURES.md explains each step.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
