"""`gene-ae embed`: a collection -> an index directory (vectors, window vectors, k-mers, sequences)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gene_ae.cli.common import MODEL_HELP, int_option, reader_args, reader_config, subcommand


def add_parser(sub, version: str) -> None:
    from gene_ae.index.build import BuildConfig

    build = BuildConfig()
    e = subcommand(sub, "embed", "embed a collection and write an index directory (vectors, k-mers, sequences)",
                    version)  # fmt: skip
    e.add_argument("--model", required=True, help=MODEL_HELP)
    e.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file, - for stdin, or shard directory")
    e.add_argument("--out", required=True, help="index directory to write; refused if it exists (see --overwrite)")
    e.add_argument("--index-kind", default=build.kind, choices=("auto", "flat", "ivf", "hnsw"),
                   help="faiss index kind (auto: exact flat up to 10^5 records, IVF above)")  # fmt: skip
    e.add_argument(
        "--no-windows", action="store_true", help="do not index windows of records longer than the model window"
    )
    e.add_argument(
        "--stride", type=int_option("stride"), default=build.stride, help="window stride in bases; 0: half a window"
    )
    e.add_argument("--batch-size", type=int_option("batch_size"), default=build.batch_size, help="encoder batch size")
    e.add_argument("--ray", action="store_true", help="embed with Ray Data map_batches (joins RAY_ADDRESS if set)")
    e.add_argument("--ray-workers", type=int_option("workers"), default=2, help="embedding actors with --ray")
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is an index directory gene-ae embed wrote (its index.json says so); any other "
        "existing file or directory is refused, never deleted",
    )
    reader_args(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from gene_ae.core.records import iter_input
    from gene_ae.index import build
    from gene_ae.index.directory import check_replaceable
    from gene_ae.model.encoder import Encoder
    from gene_ae.registry.tracking import pinned_uri, resolve_version

    check_replaceable(args.out, args.overwrite)  # before the model loads or anything is read
    version = resolve_version(args.model)
    # The index records the exact version (an alias moves; search must embed with the model that built it).
    model_uri = str(Path(args.model).resolve()) if Path(args.model).exists() else pinned_uri(args.model, version)
    encoder = Encoder.load(model_uri)
    if args.ray:
        embed = partial(build.embed_with_ray, model_uri, batch_size=args.batch_size, workers=args.ray_workers)
    else:
        embed = partial(build.embed_local, encoder, batch_size=args.batch_size)
    model = build.ModelInfo(uri=model_uri, version=version, dim=encoder.dim, window=encoder.window)
    cfg = build.BuildConfig(args.index_kind, not args.no_windows, args.stride, batch_size=args.batch_size)
    records = iter_input(args.input, reader_config(args))
    meta = build.build_index(records, embed, model, args.out, cfg, args.overwrite, source=args.input)
    print(
        f"gene-ae embed: {len(meta.entries):,} records ({meta.kind}, dim {encoder.dim}"
        f"{', with window vectors' if meta.windows else ''}, k-mer index, sequences) from {args.input} -> {args.out}",
        file=sys.stderr,
    )
    return 0
