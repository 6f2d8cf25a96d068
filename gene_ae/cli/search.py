"""`gene-ae search`: query sequences against an index directory; hits as TSV or BLAST tabular."""

from __future__ import annotations

import argparse
import sys

from gene_ae.cli.common import check_out_file, declared_features, int_option, reader_args, reader_config, subcommand
from gene_ae.cli.output import OUTFMTS
from shard_tools.inputs import STDIN


def add_parser(sub, version: str) -> None:
    from gene_ae.search.engine import SearchConfig

    search_cfg = SearchConfig()
    s = subcommand(sub, "search", "search an index with query sequences; hits as TSV (or BLAST tabular)", version)
    s.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    s.add_argument("query", help="query FASTA/FASTQ/GenBank/EMBL/TSV file, or - for stdin (read as a stream)")
    s.add_argument("-k", type=int_option("k"), default=search_cfg.k, help="hits per query")
    s.add_argument("--model", help="override the model recorded in the index")
    s.add_argument("--out", help="write hits to this file (replaced whole, atomically) instead of stdout")
    s.add_argument(
        "--outfmt", choices=OUTFMTS, default=OUTFMTS[0],
        help="tsv: gene-ae's columns with a header; blast6: BLAST's 12 tabular columns, no header (README)",
    )  # fmt: skip
    s.add_argument(
        "--batch-size", type=int_option("batch_size"), default=search_cfg.batch_size, help="encoder batch size"
    )
    s.add_argument(
        "--rerank", type=int_option("rerank"), default=search_cfg.rerank, metavar="N",
        help="align each query to its top N candidates and order them by identity (0: off, no identity column)",
    )  # fmt: skip
    s.add_argument("--collection", help="align against this file instead of the sequences the index holds")
    s.add_argument(
        "--sources", type=source_list, default=search_cfg.sources, metavar="LIST",
        help=f"candidate lists to fuse, comma separated (default {','.join(search_cfg.sources)}): the record vectors, "
        "the window vectors, the exact k-mers (docs/BENCHMARKS.md: what each costs and finds at 10^6 genes)",
    )  # fmt: skip
    s.add_argument(
        "--where", metavar="EXPR",
        help="only records whose features pass, e.g. 'family == \"Enterobacter\" and gc > 0.5' (==, !=, <, <=, >, "
        ">=, in [...], not in, and, or, not, parentheses; a missing value matches nothing; docs/FEATURES.md)",
    )  # fmt: skip
    s.add_argument("--show-features", metavar="NAME,...", help="add these features of each hit as columns (tsv)")
    reader_args(s)
    s.set_defaults(func=run)


def source_list(text: str) -> tuple[str, ...]:
    """--sources: a comma-separated subset of the candidate lists, else a one-line usage error."""
    from gene_ae.search.candidates import SOURCES

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SOURCES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of {', '.join(SOURCES)}, comma separated")
    return names


def run(args: argparse.Namespace) -> int:
    from gene_ae.cli import output
    from gene_ae.cli.embed import required_features
    from gene_ae.core.features import where
    from gene_ae.core.records import iter_input
    from gene_ae.index.collection import Collection
    from gene_ae.search import engine

    if args.query == STDIN and args.collection == STDIN:
        raise ValueError("'-' (standard input) can be the query or --collection, not both")
    check_out_file(args.out)
    index = Collection.open(args.index)
    meta = index.meta
    allowed = where(args.where, index.features()) if args.where is not None else None
    passing = index.allowed(allowed)
    if passing is not None and not passing.any():  # say so, rather than print a header and nothing
        why = f"no record passes --where {args.where!r}" if allowed is not None else "every record was removed"
        print(f"gene-ae search: warning: {why}; no hits", file=sys.stderr)
    shown = _shown_features(args, meta)
    encoder, embed = open_encoder(index.shards[0], args.model, args.batch_size, args.index)
    reader = reader_config(args)
    needed = required_features(encoder, declared_features(args, args.query), args.query)
    queries = list(iter_input(args.query, reader))
    if not queries:
        raise ValueError(f"{args.query}: no query sequences")
    features = {n: [q.features.get(n) for q in queries] for n in needed} if needed else None
    engine.check_queries(index.shards[0], queries, args.query)
    subject = _collection(args, index) if args.rerank and args.collection else None
    cfg = engine.SearchConfig(args.k, args.rerank, sources=args.sources, batch_size=args.batch_size)
    results = engine.search(index, [q.tokens for q in queries], embed, cfg, subject, allowed, features)
    entries = index.entries
    if args.outfmt == "blast6":
        lines = output.hits_blast6(queries, results, entries)
    else:
        extra = (shown, index.features()) if shown else None
        lines = output.hits_tsv(queries, results, entries, identity=bool(args.rerank), features=extra)
    output.emit(lines, args.out)
    return 0


def open_encoder(shard0, model: str | None, batch_size: int, shown: str):
    """(encoder, embed) for searching an index whose first shard is `shard0`: the model it was built with unless
    `model` is given, refused in one line when its vectors are not the index's (dim, or re-embedded records;
    `shown` names the index). `gene-ae serve-index` loads its encoder through this too."""
    from functools import partial

    from gene_ae.model.encoder import Encoder
    from gene_ae.search import engine

    meta = shard0.meta
    model_uri = model or meta.model_uri  # the exact version the index was built with, unless asked
    encoder = Encoder.load(model_uri)
    if encoder.dim != meta.dim:
        raise ValueError(f"{model_uri}: vectors of dim {encoder.dim}, the index's are {meta.dim}: {_which(meta)}")
    embed = partial(encoder.embed_tokens, batch_size=batch_size)
    cosine = engine.model_agreement(shard0, embed)
    if cosine < engine.SAME_MODEL_COSINE:
        raise ValueError(
            f"{model_uri}: its vectors of records stored in {shown} differ from the index's (cosine "
            f"{cosine:.3f} < {engine.SAME_MODEL_COSINE}): not the model the index was built with; {_which(meta)}"
        )
    return encoder, embed


def _shown_features(args: argparse.Namespace, meta) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in (args.show_features or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in meta.features]
    if unknown:
        known = ", ".join(sorted(meta.features)) or "none: build the index with --feature-column"
        raise ValueError(f"--show-features: unknown feature {unknown[0]!r} (this index has: {known})")
    if names and args.outfmt != "tsv":
        raise ValueError("--show-features adds columns to the tsv output, not to blast6 (its columns are fixed)")
    return names


def _which(meta) -> str:
    return f"search with the model it was built with ({meta.model_uri}: leave --model out) or rebuild the index"


def _collection(args: argparse.Namespace, index):
    """Record position -> tokens from --collection (optional since indexes hold their sequences). Every
    indexed record must be in it, with the length the index records and, when the index holds its
    sequences, the same bases: a collection that only shares the ids is refused."""
    from gene_ae.core.records import iter_input

    entries = index.entries
    wanted = set(entries.ids)
    seqs = {r.id: r.tokens for r in iter_input(args.collection, reader_config(args)) if r.id in wanted}
    missing = wanted - seqs.keys()
    if missing:
        raise ValueError(
            f"{args.collection}: {len(missing):,} indexed records are not in it (e.g. {sorted(missing)[0]!r}); "
            "give the file the index was built from, or leave --collection out (the index holds its sequences)"
        )
    for j, e in enumerate(entries):
        tokens = seqs[e.id]
        same = tokens.size == e.length
        if same and all(s.sequences is not None for s in index.shards):
            same = bool((index.sequence(j) == tokens).all())
        if not same:
            raise ValueError(
                f"{args.collection}: record {e.id!r} differs from the one indexed ({tokens.size:,} bases, the index "
                f"has {e.length:,}{'' if tokens.size != e.length else ' with other bases'}): not the collection the "
                "index was built from; leave --collection out (the index holds its sequences)"
            )
    return lambda j: seqs[entries.ids[j]]
