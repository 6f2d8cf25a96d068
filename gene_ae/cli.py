"""`gene-ae embed | search | eval | reconstruct | promote | serve`: thin argument parsing over the library.

Usage errors (a bad number, an unknown choice) are one line and exit 1 while parsing (shard_tools.options);
library errors become one line and exit 1 in `main`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from gene_ae.evaluate.config import DEFAULT_METHODS
from gene_ae.output import OUTFMTS
from shard_tools.inputs import FORMATS, STDIN
from shard_tools.options import Limit, Parser, number
from shard_tools.text import printable


def _reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), help="input format; auto: by content and name"
    )
    p.add_argument("--seq-column", default="sequence", help="table column holding the sequence")
    p.add_argument("--id-column", default=None, help="table column holding the id (None: row number)")
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

    from gene_ae import output, search
    from gene_ae.encoder import Encoder
    from gene_ae.records import iter_input

    if args.query == STDIN and args.collection == STDIN:
        raise ValueError("'-' (standard input) can be the query or --collection, not both")
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
    if args.outfmt == "blast6":
        lines = output.hits_blast6(queries, results, meta.entries)
    else:
        lines = output.hits_tsv(queries, results, meta.entries, identity=bool(args.rerank))
    output.emit(lines, args.out)
    return 0


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


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from gene_ae import output
    from gene_ae.encoder import Encoder
    from gene_ae.records import iter_input
    from shard_tools.alphabet import decode

    encoder = Encoder.load(args.model)

    def lines():
        yield output.row(("id", "length", "identity", "reconstruction"))
        for record in iter_input(args.input, _reader(args)):
            rec = encoder.reconstruct_tokens(record.tokens)
            identity = float((rec == record.tokens).mean())
            yield output.row((record.id, record.tokens.size, f"{identity:.4f}", decode(rec)))

    output.emit(lines(), args.out)
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


def cmd_serve(args: argparse.Namespace) -> int:
    """Replace this process with `mlflow models serve`, found and run from this venv (no activation needed)."""
    from gene_ae.serving import serve_command, serve_env

    cmd = serve_command(args.model, args.host, args.port)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, serve_env())
    return 0  # not reached


# Numeric option ranges, checked while the command line is parsed (shard_tools.options). search.search checks
# k and rerank again for library callers; the configs could own these as ShardConfig.LIMITS does.
LIMITS = {
    "k": Limit(1),
    "rerank": Limit(0),
    "batch_size": Limit(1),
    "stride": Limit(0),
    "workers": Limit(1),
    "n_queries": Limit(1),
    "align_queries": Limit(0),
    "seed": Limit(0),
    "port": Limit(1, 65535),
}


def _int(name: str):
    return number(int, LIMITS[name])


def _subcommand(sub, name: str, what: str, version: str, **kwargs) -> Parser:
    """A subcommand whose --help starts with what it does."""
    return sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".", version=version, **kwargs)


def build_parser() -> Parser:
    from gene_ae.embedding import BuildConfig
    from gene_ae.evaluate.config import EvalConfig
    from gene_ae.search import SearchConfig
    from gene_ae.serving import DEFAULT_PORT
    from gene_ae.tracking import DEFAULT_MODEL_NAME
    from shard_tools import __version__

    build, search_cfg, eval_cfg = BuildConfig(), SearchConfig(), EvalConfig()
    p = Parser(
        prog="gene-ae",
        version=__version__,
        description="Embed DNA sequences with a trained gene-ae encoder, "
        "search collections by vector similarity, evaluate against k-mer methods, serve the encoder.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_help = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or a checkpoint directory"

    e = _subcommand(sub, "embed", "embed a collection and write an index directory (vectors, k-mers, sequences)",
                    __version__)  # fmt: skip
    e.add_argument("--model", required=True, help=model_help)
    e.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file, - for stdin, or shard directory")
    e.add_argument("--out", required=True, help="index directory to write; refused if it exists (see --overwrite)")
    e.add_argument("--index-kind", default=build.kind, choices=("auto", "flat", "ivf", "hnsw"),
                   help="faiss index kind (auto: exact flat up to 10^5 records, IVF above)")  # fmt: skip
    e.add_argument(
        "--no-windows", action="store_true", help="do not index windows of records longer than the model window"
    )
    e.add_argument("--windows", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    e.add_argument(
        "--stride", type=_int("stride"), default=build.stride, help="window stride in bases; 0: half a window"
    )
    e.add_argument("--batch-size", type=_int("batch_size"), default=build.batch_size, help="encoder batch size")
    e.add_argument("--ray", action="store_true", help="embed with Ray Data map_batches (joins RAY_ADDRESS if set)")
    e.add_argument("--ray-workers", type=_int("workers"), default=2, help="embedding actors with --ray")
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is an index directory gene-ae embed wrote (its index.json says so); any other "
        "existing file or directory is refused, never deleted",
    )
    _reader_args(e)
    e.set_defaults(func=cmd_embed)

    s = _subcommand(sub, "search", "search an index with query sequences; hits as TSV (or BLAST tabular)", __version__)
    s.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    s.add_argument("query", help="query FASTA/FASTQ/GenBank/EMBL/TSV file, or - for stdin (read as a stream)")
    s.add_argument("-k", type=_int("k"), default=search_cfg.k, help="hits per query")
    s.add_argument("--model", help="override the model recorded in the index")
    s.add_argument("--out", help="write hits to this file (replaced whole, atomically) instead of stdout")
    s.add_argument(
        "--outfmt", choices=OUTFMTS, default=OUTFMTS[0],
        help="tsv: gene-ae's columns with a header; blast6: BLAST's 12 tabular columns, no header (README)",
    )  # fmt: skip
    s.add_argument("--batch-size", type=_int("batch_size"), default=search_cfg.batch_size, help="encoder batch size")
    s.add_argument(
        "--rerank", type=_int("rerank"), default=search_cfg.rerank, metavar="N",
        help="align each query to its top N candidates and order them by identity (0: off, no identity column)",
    )  # fmt: skip
    s.add_argument("--collection", help="align against this file instead of the sequences the index holds")
    _reader_args(s)
    s.set_defaults(func=cmd_search)

    v = _subcommand(sub, "eval", "measure search: gene-ae vs exact and hashed k-mer counts, sourmash and alignment",
                    __version__)  # fmt: skip
    v.add_argument("--model", required=True, help=model_help)
    v.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file or shard directory (its --split)")
    v.add_argument("--out", required=True, help="report directory (report.json, report.md, PNG plots)")
    v.add_argument("--queries", help="a second labelled set queried against --input (e.g. dog against chimp)")
    v.add_argument("--split", default="val", help="shard split to evaluate on (val: unseen in training)")
    v.add_argument("--n-queries", type=_int("n_queries"), default=eval_cfg.n_queries,
                   help="mutated queries per divergence")  # fmt: skip
    v.add_argument("--seed", type=_int("seed"), default=eval_cfg.seed, help="seed of the mutations and samples")
    v.add_argument(
        "--rerank", type=_int("rerank"), default=eval_cfg.rerank, metavar="N",
        help="also score every method with its top N hits re-ordered by alignment identity ('+align' rows)",
    )  # fmt: skip
    v.add_argument(
        "--label-regex",
        help="group labels by this regex's first group, e.g. '^(clade_I+b?)' to compare top-level clades; "
        "labels it does not match are left out (placeholders like 'unlabelled' always are)",
    )
    v.add_argument(
        "--methods", default="all",
        help="comma-separated: gene-ae, K-mer (exact counts), K-mer@SIZE or K-mer@dim (hashed to the model's "
        f"vector size), sourmash-kK; all = {' '.join(DEFAULT_METHODS)}",
    )  # fmt: skip
    v.add_argument(
        "--align-queries", type=_int("align_queries"), default=eval_cfg.align_queries, metavar="N",
        help="copies of N sources also aligned against the whole collection: the ceiling and its cost (0 = off)",
    )  # fmt: skip
    v.add_argument("--no-sourmash", action="store_true", help="skip the sourmash baselines")
    v.add_argument("--mlflow-run", help="log the report to this MLflow run id")
    v.add_argument("--print", action="store_true", help="print the whole markdown report")
    _reader_args(v)
    v.set_defaults(func=cmd_eval)

    r = _subcommand(sub, "reconstruct", "decode each record from its latent and report identity to the input",
                    __version__)  # fmt: skip
    r.add_argument("--model", required=True, help=model_help)
    r.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file, or - for stdin")
    r.add_argument("--out", help="write TSV to this file (replaced whole, atomically) instead of stdout")
    _reader_args(r)
    r.set_defaults(func=cmd_reconstruct)

    m = _subcommand(  # its --version is the model version, so it replaces the version action
        sub, "promote", "point an alias (e.g. production) at a registered model version", __version__,
        conflict_handler="resolve",
    )  # fmt: skip
    m.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name")
    m.add_argument("--model", dest="name", help=argparse.SUPPRESS)  # deprecated spelling of --name
    m.add_argument("--version", required=True, help="registered version to point the alias at")
    m.add_argument("--alias", default="production", help="alias to set")
    m.add_argument("--if-better", action="store_true", help="only if its validation recall beats the holder's")
    m.set_defaults(func=cmd_promote)

    sv = _subcommand(sub, "serve", "serve an encoder over HTTP (mlflow models serve; POST /invocations)", __version__)
    sv.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/encoder")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=_int("port"), default=DEFAULT_PORT, help="port to listen on")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, OSError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"gene-ae {args.command}: error: {printable(msg)}", file=sys.stderr)
        code = 1
    except Exception as exc:  # MLflow registry errors and the like: still one line
        if type(exc).__name__ not in ("MlflowException", "RestException"):
            raise
        print(f"gene-ae {args.command}: error: {printable(str(exc).splitlines()[0])}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
