"""`gene-ae embed | search | eval | reconstruct | promote`: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path


def _reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=("auto", "fasta", "fastq", "tsv", "csv"), help="input format")
    p.add_argument("--seq-column", default="sequence", help="table column holding the sequence")
    p.add_argument("--id-column", default=None, help="table column holding the id")
    p.add_argument("--label-column", default=None, help="table column holding a label (e.g. class)")


def _reader(args: argparse.Namespace):
    from shard_tools.inputs import ReaderConfig

    return ReaderConfig(args.format, args.seq_column, args.id_column, args.label_column)


def cmd_embed(args: argparse.Namespace) -> int:
    from functools import partial

    from gene_ae import embedding
    from gene_ae.encoder import Encoder
    from gene_ae.records import iter_input
    from gene_ae.tracking import resolve_version

    encoder = Encoder.load(args.model)
    if args.ray:
        embed = partial(embedding.embed_with_ray, args.model, batch_size=args.batch_size, workers=args.ray_workers)
    else:
        embed = partial(embedding.embed_local, encoder, batch_size=args.batch_size)
    model_uri = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    model = embedding.ModelInfo(model_uri, resolve_version(args.model), encoder.dim, encoder.window)
    cfg = embedding.BuildConfig(args.index_kind, not args.no_windows, args.stride, batch_size=args.batch_size)
    records = iter_input(args.input, _reader(args))
    meta = embedding.build_index(records, embed, model, args.out, cfg, args.overwrite, source=args.input)
    print(
        f"gene-ae embed: {len(meta.entries):,} records ({meta.kind}, dim {encoder.dim}"
        f"{', with window vectors' if meta.windows else ''}, k-mer index, sequences) from {args.input} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from functools import partial

    from gene_ae import search
    from gene_ae.encoder import Encoder
    from gene_ae.records import iter_input

    if args.rerank < 0:
        raise ValueError(f"--rerank must be 0 (off) or a number of hits to align, got {args.rerank}")
    loaded = search.LoadedIndex.open(args.index)
    meta = loaded.meta
    encoder = Encoder.load(args.model or meta.model_uri)
    if encoder.dim != meta.dim:
        raise ValueError(
            f"{args.index}: index has dim {meta.dim}, model {encoder.dim}: use the model it was built with"
        )
    queries = list(iter_input(args.query, _reader(args)))
    if not queries:
        raise ValueError(f"{args.query}: no query sequences")
    subject = _collection(args, meta) if args.rerank and args.collection else None
    cfg = search.SearchConfig(args.k, args.rerank, batch_size=args.batch_size)
    embed = partial(encoder.embed_tokens, batch_size=args.batch_size)
    results = search.search(loaded, [q.tokens for q in queries], embed, cfg, subject)
    _print_hits(queries, results, meta, args)
    return 0


def _print_hits(queries, results, meta, args: argparse.Namespace) -> None:
    out = open(args.out, "w") if args.out else sys.stdout
    cols = ["query_id", "subject_id", "rank", "similarity", "query_length", "subject_length", "subject_label"]
    cols += ["subject_start", "subject_end", "score"] + (["identity"] if args.rerank else [])
    print("\t".join(cols), file=out)
    for query, hits in zip(queries, results):
        for rank, hit in enumerate(hits, start=1):
            e = meta.entries[hit.subject]
            sim = f"{hit.similarity:.4f}" if hit.similarity is not None else ""
            fields = [query.id, e.id, rank, sim, query.tokens.size, e.length, e.label or ""]
            fields += [hit.subject_start, hit.subject_end, f"{hit.score:.5f}"]
            fields += [f"{hit.identity:.4f}" if hit.identity is not None else ""] if args.rerank else []
            print("\t".join(map(str, fields)), file=out)
    if args.out:
        out.close()


def _collection(args: argparse.Namespace, meta):
    """Record position -> tokens from --collection (optional since indexes hold their sequences); every
    indexed record must be in it."""
    from gene_ae.records import iter_input

    wanted = {e.id for e in meta.entries}
    seqs = {r.id: r.tokens for r in iter_input(args.collection, _reader(args)) if r.id in wanted}
    missing = wanted - seqs.keys()
    if missing:
        raise ValueError(
            f"{args.collection}: {len(missing):,} indexed records are not in it (e.g. {sorted(missing)[0]!r}); "
            "give the file the index was built from, or leave --collection out (the index holds its sequences)"
        )
    return lambda j: seqs[meta.entries[j].id]


def cmd_eval(args: argparse.Namespace) -> int:
    from gene_ae.encoder import Encoder
    from gene_ae.evaluate import EvalConfig, run_eval
    from gene_ae.records import read_columns

    try:
        re.compile(args.label_regex or "")
    except re.error as exc:
        raise ValueError(f"--label-regex {args.label_regex!r}: {exc}") from None
    encoder = Encoder.load(args.model)
    data = read_columns(args.input, _reader(args), (args.split,))
    if not data.seqs:
        raise ValueError(f"{args.input}: no sequences to evaluate")
    ids, seqs, labels = data.ids, data.seqs, data.labels
    cross = None
    if args.queries:
        q = read_columns(args.queries, _reader(args), (args.split,))
        cross = (q.seqs, q.labels)
    methods = ("gene-ae", "5-mer") + (() if args.no_sourmash else ("sourmash",))
    cfg = EvalConfig(n_queries=args.n_queries, seed=args.seed, methods=methods)
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


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from gene_ae.encoder import Encoder
    from gene_ae.records import iter_input
    from shard_tools.alphabet import decode

    encoder = Encoder.load(args.model)
    out = open(args.out, "w") if args.out else sys.stdout
    print("id\tlength\tidentity\treconstruction", file=out)
    for record in iter_input(args.input, _reader(args)):
        rec = encoder.reconstruct_tokens(record.tokens)
        identity = float((rec == record.tokens).mean())
        print(f"{record.id}\t{record.tokens.size}\t{identity:.4f}\t{decode(rec)}", file=out)
    if args.out:
        out.close()
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from gene_ae.tracking import promote_if_better, set_alias

    if args.if_better:
        won = promote_if_better(args.name, args.version, args.alias)
        print(f"gene-ae promote: {args.name}/{args.version} {'is now' if won else 'did not beat'} @{args.alias}")
    else:
        set_alias(args.name, args.version, args.alias)
        print(f"gene-ae promote: models:/{args.name}@{args.alias} -> version {args.version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gene_ae.search import DEFAULT_RERANK
    from gene_ae.tracking import DEFAULT_MODEL_NAME

    p = argparse.ArgumentParser(
        prog="gene-ae",
        description="Embed DNA sequences with a trained gene-ae encoder, "
        "search collections by vector similarity, evaluate against k-mer methods.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    model_help = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or a checkpoint directory"

    e = sub.add_parser("embed", help="embed a collection and write a vector index")
    e.add_argument("--model", required=True, help=model_help)
    e.add_argument("--input", required=True, help="FASTA/FASTQ/TSV file or shard directory")
    e.add_argument("--out", required=True, help="index directory to write")
    e.add_argument(
        "--index-kind",
        default="auto",
        choices=("auto", "flat", "ivf", "hnsw"),
        help="faiss index kind (auto: exact flat up to 10^5 records, IVF above)",
    )
    e.add_argument(
        "--no-windows", action="store_true", help="do not index windows of records longer than the model window"
    )
    e.add_argument("--windows", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    e.add_argument("--stride", type=int, default=0, help="window stride (default: half a window)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--ray", action="store_true", help="embed with Ray Data map_batches (joins RAY_ADDRESS if set)")
    e.add_argument("--ray-workers", type=int, default=2, help="embedding actors with --ray")
    e.add_argument("--overwrite", action="store_true", help="replace an existing index directory")
    _reader_args(e)
    e.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="search an index with query sequences; TSV hits")
    s.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    s.add_argument("query", help="query FASTA/FASTQ/TSV file, or - for stdin")
    s.add_argument("-k", type=int, default=10, help="hits per query")
    s.add_argument("--model", help="override the model recorded in the index")
    s.add_argument("--out", help="write hits here instead of stdout")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument(
        "--rerank", type=int, default=DEFAULT_RERANK, metavar="N",
        help=f"align each query to its top N candidates and order them by identity (default {DEFAULT_RERANK}; "
        "0 = off, no identity column)",
    )  # fmt: skip
    s.add_argument("--collection", help="align against this file instead of the sequences the index holds")
    _reader_args(s)
    s.set_defaults(func=cmd_search)

    v = sub.add_parser("eval", help="how good is search: gene-ae vs 5-mer and sourmash, side by side")
    v.add_argument("--model", required=True, help=model_help)
    v.add_argument("--input", required=True, help="FASTA/FASTQ/TSV file or shard directory (its --split)")
    v.add_argument("--out", required=True, help="report directory (report.json, report.md, PNG plots)")
    v.add_argument("--queries", help="a second labelled set queried against --input (e.g. dog against chimp)")
    v.add_argument("--split", default="val", help="shard split to evaluate on (default val: unseen in training)")
    v.add_argument("--n-queries", type=int, default=200, help="mutated queries per divergence")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument(
        "--rerank", type=int, default=0, metavar="N",
        help="also score every method with its top N hits re-ordered by alignment identity ('+align' rows)",
    )  # fmt: skip
    v.add_argument(
        "--label-regex",
        help="group labels by this regex's first group, e.g. '^(clade_I+b?)' to compare top-level clades; "
        "labels it does not match are left out (placeholders like 'unlabelled' always are)",
    )
    v.add_argument("--no-sourmash", action="store_true", help="skip the sourmash baseline")
    v.add_argument("--mlflow-run", help="log the report to this MLflow run id")
    v.add_argument("--print", action="store_true", help="print the whole markdown report")
    _reader_args(v)
    v.set_defaults(func=cmd_eval)

    r = sub.add_parser("reconstruct", help="decode each record from its latent; identity to the input")
    r.add_argument("--model", required=True, help=model_help)
    r.add_argument("--input", required=True, help="FASTA/FASTQ/TSV file")
    r.add_argument("--out", help="write TSV here instead of stdout")
    _reader_args(r)
    r.set_defaults(func=cmd_reconstruct)

    m = sub.add_parser("promote", help="point an alias (e.g. production) at a registered version")
    m.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name")
    m.add_argument("--model", dest="name", help=argparse.SUPPRESS)  # deprecated spelling of --name
    m.add_argument("--version", required=True)
    m.add_argument("--alias", default="production")
    m.add_argument("--if-better", action="store_true", help="only if its validation recall beats the holder's")
    m.set_defaults(func=cmd_promote)
    return p


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, OSError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"gene-ae {args.command}: error: {msg}", file=sys.stderr)
        code = 1
    except Exception as exc:  # MLflow registry errors and the like: still one line
        if type(exc).__name__ not in ("MlflowException", "RestException"):
            raise
        print(f"gene-ae {args.command}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        code = 1
    sys.exit(code)
