"""`gene-ae search`: query sequences against an index directory; hits as TSV, BLAST tabular, SAM or PAF, or the
query file as one genome against the index's genomes (ANI)."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext

from gene_ae.cli.common import (
    Given,
    check_out_file,
    declared_features,
    given,
    int_option,
    reader_args,
    reader_config,
    subcommand,
)
from gene_ae.search.limits import SEARCH_LIMITS
from shard_tools.cpus import usable_cpus
from shard_tools.options import Range, number
from shard_tools.record import STDIN

PROGRESS_BASES = 1_000_000  # a query (or query genome) longer than this shows a progress line on a terminal
# --threads by default: the CPUs this process may use, at most this many (each thread holds one query's working
# memory, ~300 MB for a 10 Mb query's chain table; more can be asked for)
THREADS = 8


def add_parser(sub, version: str) -> None:
    from gene_ae.search.engine import FAST, SearchConfig
    from gene_ae.search.genomes import GenomeConfig

    search_cfg = SearchConfig()
    s = subcommand(sub, "search", "search an index with query sequences; hits as TSV (or BLAST tabular)", version)
    s.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    s.add_argument("query", help="query FASTA/FASTQ/GenBank/EMBL/TSV file, or - for stdin (read as a stream)")
    s.add_argument("-k", type=int_option("k"), default=search_cfg.k, help="hits per query (ani: subject genomes)")
    s.add_argument("--model", help="override the model recorded in the index")
    s.add_argument("--out", help="write hits to this file (replaced whole, atomically) instead of stdout")
    s.add_argument(
        "--outfmt", type=outfmt, default="tsv", metavar="FORMAT",
        help="tsv: gene-ae's columns with a header; blast6 (or 6): BLAST's 12 tabular columns; '6 qseqid sseqid "
        "pident ...': BLAST's columns by name; sam; paf; ani: every record of the query file is one genome (its "
        "contigs), and the subject genomes closest to it are written with ANI and aligned fractions (docs/OUTPUT.md)",
    )  # fmt: skip
    s.add_argument(
        "--subject-genome", metavar="FEATURE",
        help="ani: records sharing this feature's value are one subject genome (an assembly's contigs; declare it "
        "at embed with --feature-column); default: each record is one",
    )  # fmt: skip
    s.add_argument(
        "--min-af", type=number(float, Range(0, 1)), default=None, metavar="F",
        help=f"ani: report a subject genome when its query or subject aligned fraction is at least F (default "
        f"{GenomeConfig().min_af:g})",
    )  # fmt: skip
    s.add_argument(
        "--evalue", type=number(float, SEARCH_LIMITS["evalue"]), default=None, metavar="E",
        help="report only aligned hits with an expect value at most E (as blastn -evalue)",
    )  # fmt: skip
    s.add_argument(
        "--batch-size", type=int_option("batch_size"), default=search_cfg.batch_size, help="encoder batch size"
    )
    s.add_argument(
        "--rerank", type=int_option("rerank"), default=search_cfg.rerank, metavar="N", action=Given,
        help="align each query to its top N candidates and order them by identity (0: off, no identity column)",
    )  # fmt: skip
    s.add_argument(
        "--deep", type=int_option("deep"), default=search_cfg.deep, metavar="N", action=Given,
        help="align the top N candidates instead when the best of those aligned first is remote (0: off); a query "
        "over 4 kb chains up to N candidates when none of its first shares a region with it",
    )  # fmt: skip
    s.add_argument(
        "--fast", action="store_true",
        help=f"align a gene-size query's first {FAST['rerank']} candidates and search no deeper (--rerank "
        f"{FAST['rerank']} --deep {FAST['deep']}, unless given; --deep-pool then unused): several times faster on "
        "long queries, a remote gene query found first less often (docs/BENCHMARKS.md); not with --outfmt ani",
    )  # fmt: skip
    s.add_argument(
        "--deep-below", type=number(float, Range(0, 1)), default=search_cfg.deep_below, metavar="F",
        help="identity under which the best aligned candidate is remote (its source ranks lower by k-mers)",
    )  # fmt: skip
    s.add_argument(
        "--deep-flat", type=number(float, Range(0, 1)), default=search_cfg.deep_flat, metavar="F",
        help="... and, with the k-mer list alone (the default --sources), only when the k-mer score of the last "
        "candidate aligned first is at least F of the first's (a flat list; 0: always); a query over 4 kb also "
        "chains every candidate voted at least F of the best (0: all)",
    )  # fmt: skip
    s.add_argument(
        "--deep-pool", type=int_option("deep_pool"), default=search_cfg.deep_pool, metavar="N",
        help="a remote gene query's --deep candidates are its first --rerank, then the best of its first N by "
        "k-mers ranked by their 8-mers on one band of diagonals (matches in line), not its first --deep by k-mers "
        "(N at most --deep: those); with the vectors alone (--sources without sparse), every gene query's first N "
        "by the vectors, ranked so before any is aligned (0: the vectors' order)",
    )  # fmt: skip
    s.add_argument(
        "--deep-trace", type=int_option("deep_trace"), default=search_cfg.deep_trace, metavar="N",
        help="a remote gene query (up to 4 kb, below --deep-below) has its best N aligned candidates traced and "
        "ranked by the local alignment's score, as blastn ranks, before -k are reported (at most -k: only those)",
    )  # fmt: skip
    s.add_argument(
        "--vote-floor", type=number(float, Range(0, 1)), default=search_cfg.vote_floor, metavar="F",
        help="a gene query's candidates whose k-mer score is under F of the best (the default --sources) are "
        "neither aligned nor reported, so a query may get fewer than -k hits, as from blastn (0: none left out)",
    )  # fmt: skip
    s.add_argument(
        "--threads", type=int_option("threads"), default=min(usable_cpus(), THREADS), metavar="N",
        help=f"queries (ani: the query genome's contigs) searched at once, the hits the same whatever the number; by "
        f"default the CPUs this process may use, at most {THREADS}",
    )  # fmt: skip
    s.add_argument("--collection", help="align against this file instead of the sequences the index holds")
    s.add_argument(
        "--sources", type=source_list, default=None, metavar="LIST",
        help=f"candidate lists to fuse, comma separated (default {','.join(search_cfg.sources)}; dense for an index "
        "built with --no-kmers): the record vectors, "
        "the window vectors, the exact k-mers (docs/BENCHMARKS.md: what each costs and finds at 10^6 genes); "
        "dense alone: a vector-first search",
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


def outfmt(text: str) -> tuple[str, tuple[str, ...]]:
    """--outfmt: (kind, BLAST columns): tsv, sam, paf, ani, or tabular with its columns, else a one-line usage
    error."""
    from gene_ae.search.columns import parse_blast_columns

    word = text.strip()
    if word in ("tsv", "sam", "paf", "ani"):
        return word, ()
    try:
        return "blast", parse_blast_columns(word)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from gene_ae.cli import output
    from gene_ae.core.bar import progress
    from gene_ae.core.features import where
    from gene_ae.core.records import iter_input
    from gene_ae.search.engine import SearchConfig
    from gene_ae.search.genomes import GenomeConfig
    from gene_ae.search.searcher import Searcher, collection_subject

    if args.fast and args.outfmt[0] == "ani":
        raise ValueError("--fast applies to hits, not to --outfmt ani (a genome comparison aligns every region)")
    preset(args)
    if args.query == STDIN and args.collection == STDIN:
        raise ValueError("'-' (standard input) can be the query or --collection, not both")
    kind, names = args.outfmt
    if kind != "tsv" and not args.rerank:
        raise ValueError(f"--outfmt {kind}: its columns come from the alignment; leave --rerank on (not 0)")
    for flag, value in (("--subject-genome", args.subject_genome), ("--min-af", args.min_af)):
        if kind != "ani" and value is not None:
            raise ValueError(f"{flag} applies to subject genomes of --outfmt ani; add --outfmt ani")
    check_out_file(args.out, reads=(args.query, args.collection), inside=(args.index,))
    searcher = Searcher.open(args.index, args.model, args.batch_size)
    args.sources = args.sources or searcher.default_sources()
    if args.model and not searcher.uses_model(args.sources):
        raise ValueError(
            f"--model {args.model}: this search reads no vectors (--sources {','.join(args.sources)}); add dense or "
            "windows to --sources to search with the model, or leave --model out"
        )
    index = searcher.collection
    allowed = where(args.where, index.features()) if args.where is not None else None
    passing = index.allowed(allowed)
    if passing is not None and not passing.any():  # say so, rather than print a header and nothing
        why = f"no record passes --where {args.where!r}" if allowed is not None else "every record was removed"
        print(f"gene-ae search: warning: {why}; no hits", file=sys.stderr)
    shown = _shown_features(args, index.meta)
    reader = reader_config(args)
    needed = searcher.required_features(declared_features(args, args.query), args.query, args.sources)
    queries = list(iter_input(args.query, reader))
    if not queries:
        raise ValueError(f"{args.query}: no query sequences")
    features = {n: [q.features.get(n) for q in queries] for n in needed} if needed else None
    searcher.check_queries(queries, args.query)
    subject = None
    if args.rerank and args.collection:
        subject = collection_subject(args.collection, index, lambda path: iter_input(path, reader))
    cfg = SearchConfig(args.k, args.rerank, sources=args.sources, batch_size=args.batch_size, evalue=args.evalue,
                       deep=args.deep, deep_below=args.deep_below, deep_flat=args.deep_flat,
                       deep_trace=args.deep_trace, deep_pool=args.deep_pool, vote_floor=args.vote_floor)  # fmt: skip
    sizes = [int(q.tokens.size) for q in queries]
    longest = sum(sizes) if kind == "ani" else max(sizes)
    threads = args.threads
    with progress("search", sum(sizes)) if longest > PROGRESS_BASES else nullcontext() as bar:
        tell = bar.update if bar is not None else None
        if kind == "ani":
            min_af = GenomeConfig().min_af if args.min_af is None else args.min_af
            genome = GenomeConfig(args.k, min_af, args.subject_genome)
            name = "-" if args.query == STDIN else args.query
            matches = searcher.genome(name, queries, cfg, genome, allowed, features, subject, tell, threads)
        else:
            results = searcher.search(queries, cfg, allowed, features, subject, tell, threads)
    entries = index.entries
    if kind != "ani":
        entries.prefetch([h.subject for hits in results for h in hits], threads)
    if kind == "ani":
        lines = output.genomes_tsv(matches)
    elif kind == "blast":
        lines = output.hits_blast(queries, results, entries, names)
    elif kind == "sam":
        lines = output.hits_sam(queries, results, entries)
    elif kind == "paf":
        lines = output.hits_paf(queries, results, entries)
    else:
        extra = (shown, index.features()) if shown else None
        lines = output.hits_tsv(queries, results, entries, identity=bool(args.rerank), features=extra)
    output.emit(lines, args.out)
    return 0


def preset(args: argparse.Namespace) -> None:
    """--fast: its settings (gene_ae/search/engine.py `FAST`) on `args`, except those given on the command line."""
    from gene_ae.search.engine import FAST

    if args.fast:
        for name in FAST.keys() - given(args):
            setattr(args, name, FAST[name])


def _shown_features(args: argparse.Namespace, meta) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in (args.show_features or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in meta.features]
    if unknown:
        known = ", ".join(sorted(meta.features)) or "none: build the index with --feature-column"
        raise ValueError(f"--show-features: unknown feature {unknown[0]!r} (this index has: {known})")
    if names and args.outfmt[0] != "tsv":
        fmt = args.outfmt[0]
        raise ValueError(f"--show-features adds columns to the tsv output, not to {fmt} (its columns are fixed)")
    return names
