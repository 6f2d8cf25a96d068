"""`gene-ae eval`: measure search, gene-ae beside exact and hashed k-mer counts, sourmash and alignment."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from gene_ae.cli.common import MODEL_HELP, check_out_dir, int_option, reader_args, reader_config, subcommand
from gene_ae.evaluate.config import DEFAULT_METHODS


def add_parser(sub, version: str) -> None:
    from gene_ae.evaluate.config import EvalConfig

    eval_cfg = EvalConfig()
    v = subcommand(sub, "eval", "measure search: gene-ae vs exact and hashed k-mer counts, sourmash and alignment",
                    version)  # fmt: skip
    v.add_argument("--model", required=True, help=MODEL_HELP)
    v.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file or shard directory (its --split)")
    v.add_argument("--out", required=True, help="report directory (report.json, report.md, PNG plots)")
    v.add_argument("--queries", help="a second labelled set queried against --input (e.g. dog against chimp)")
    v.add_argument("--split", default="val", help="shard split to evaluate on (val: unseen in training)")
    v.add_argument("--n-queries", type=int_option("n_queries"), default=eval_cfg.n_queries,
                   help="mutated queries per divergence")  # fmt: skip
    v.add_argument("--seed", type=int_option("seed"), default=eval_cfg.seed, help="seed of the mutations and samples")
    v.add_argument(
        "--rerank", type=int_option("rerank"), default=eval_cfg.rerank, metavar="N",
        help="also score every method with its top N hits re-ordered by alignment identity ('+align' rows)",
    )  # fmt: skip
    v.add_argument(
        "--label-regex",
        help="group labels by this regex's first group, e.g. '^(clade_I+b?)' to compare top-level clades; "
        "labels it does not match are left out (placeholders like 'unlabelled' always are)",
    )
    v.add_argument(
        "--methods", default="all",
        help="comma-separated: gene-ae search (the default search), gene-ae (the vector), K-mer (exact counts), "
        "K-mer@SIZE or K-mer@dim (hashed to the model's "
        "vector size), sourmash-kK; at N bytes a record: gene-ae@Nb (the vector as the index codes it), "
        "K-mer@Nb (hashed, 8 bits a value), minhash-kK@Nb; gene-ae@Nbit and K-mer@Nbit as N sign bits; "
        f"all = {' '.join(DEFAULT_METHODS)}",
    )  # fmt: skip
    v.add_argument(
        "--align-queries", type=int_option("align_queries"), default=eval_cfg.align_queries, metavar="N",
        help="copies of N sources also aligned against the whole collection: the ceiling and its cost (0 = off)",
    )  # fmt: skip
    v.add_argument("--no-sourmash", action="store_true", help="skip the sourmash baselines")
    v.add_argument("--mlflow-run", help="log the report to this MLflow run id")
    v.add_argument("--print", action="store_true", help="print the whole markdown report")
    reader_args(v)
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gene_ae.core.records import read_columns
    from gene_ae.evaluate import EvalConfig, run_eval
    from gene_ae.evaluate.report import check_collection
    from gene_ae.model.encoder import Encoder
    from shard_tools.record import display_name

    try:
        re.compile(args.label_regex or "")
    except re.error as exc:
        raise ValueError(f"--label-regex {args.label_regex!r}: {exc}") from None
    check_out_dir(args.out)  # the report directory, before anything is read or the model loads
    data = read_columns(args.input, reader_config(args), (args.split,))
    check_collection(data.seqs, display_name(args.input))
    ids, seqs, labels = data.ids, data.seqs, data.labels
    cross = None
    if args.queries:
        q = read_columns(args.queries, reader_config(args), (args.split,))
        if not q.seqs:
            raise ValueError(f"{display_name(args.queries)}: no sequences to query with (--queries)")
        cross = (q.seqs, q.labels)
    encoder = Encoder.load(args.model)
    methods = (
        DEFAULT_METHODS if args.methods == "all" else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    )
    if args.no_sourmash:
        methods = tuple(m for m in methods if not m.startswith("sourmash"))
    cfg = EvalConfig(n_queries=args.n_queries, seed=args.seed, methods=methods, align_queries=args.align_queries)
    cfg.rerank, cfg.label_regex = args.rerank, args.label_regex or ""
    has_labels = any(lab is not None for lab in labels)
    report = run_eval(
        encoder, seqs, ids, labels if has_labels else None, cfg, args.out, args.mlflow_run, cross_queries=cross
    )
    mr = report["mutation_retrieval"]
    print(f"gene-ae eval: {len(seqs):,} sequences; report in {args.out}/report.md", file=sys.stderr)
    print(Path(args.out, "report.md").read_text() if args.print else _headline(mr), end="")
    return 0


def _headline(mr: dict) -> str:
    """recall@1 per method and divergence, the figure users ask for first."""
    ds = "  ".join(f"{d:>6.0%}" for d in mr["divergences"])
    width = max(10, *(len(m) for m in mr["methods"]))
    lines = [f"{'recall@1':{width}s}  {ds}\n"]
    for method, scores in mr["methods"].items():
        lines.append(f"{method:{width}s}  " + "  ".join(f"{v:6.3f}" for v in scores["recall@1"]) + "\n")
    return "".join(lines)
