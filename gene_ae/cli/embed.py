"""`gene-ae embed`: a collection -> an index directory (vectors, window vectors, k-mers, sequences)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gene_ae.cli.common import (
    MODEL_HELP,
    check_out_dir,
    declared_features,
    int_option,
    reader_args,
    reader_config,
    subcommand,
)


def add_parser(sub, version: str) -> None:
    from gene_ae.index.build import SHARD_BASES, BuildConfig
    from gene_ae.index.vectors import CODECS, PQ_BYTES

    build = BuildConfig()
    e = subcommand(sub, "embed", "embed a collection and write an index directory (vectors, k-mers, sequences)",
                    version)  # fmt: skip
    e.add_argument("--model", help=MODEL_HELP + " (with --append: the index's own model, the default)")
    e.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file, - for stdin, or shard directory")
    e.add_argument("--out", required=True, help="index directory to write; refused if it exists (see --overwrite)")
    e.add_argument("--index-kind", default=build.kind, choices=("auto", "flat", "ivf", "hnsw"),
                   help="faiss kind (auto: flat to 262,144 codes, 20,000 vectors a shard, IVF above)")  # fmt: skip
    e.add_argument(
        "--no-windows", action="store_true", help="do not index windows of records longer than the model window"
    )
    e.add_argument(
        "--no-kmers", action="store_true",
        help="no exact k-mer index: the vectors and the sequences alone, searched vector-first (--sources dense; "
        "docs/RESULTS.md: what it finds against the k-mers)",
    )  # fmt: skip
    e.add_argument("--window-min", type=int_option("window_min"), default=build.window_min, metavar="BASES",
                   help="index windows of records at least this long only (shorter ones: their record vector and "
                   "k-mers find them)")  # fmt: skip
    e.add_argument(
        "--stride", type=int_option("stride"), default=build.stride, help="window stride in bases; 0: half a window"
    )
    e.add_argument("--batch-size", type=int_option("batch_size"), default=build.batch_size, help="encoder batch size")
    e.add_argument("--vector-codec", default=build.codec, choices=tuple(CODECS),
                   help="how record and window vectors are stored: float32, float16 (half), 8 bits a value "
                   f"(a quarter), {PQ_BYTES} bytes a vector (product quantisation), 1 bit a value (signs: the code a "
                   "model trained with model.vector_bits = 1 is trained as); docs/BENCHMARKS.md has what "
                   "each costs in recall")  # fmt: skip
    e.add_argument("--kmer-scaled", type=int_option("kmer_scaled"), default=build.kmers.scaled, metavar="S",
                   help="keep about 1/S of the distinct k-mers in the exact k-mer index (by hash, FracMinHash): "
                   "an index about S times smaller, fewer shared k-mers for far copies")  # fmt: skip
    e.add_argument("--kmer-k", type=int_option("kmer_k"), default=build.kmers.k, metavar="K",
                   help="k-mer size of the exact k-mer index; 0: from the first records' lengths (10 up to 20 kb, 14 "
                   "beyond; docs/BENCHMARKS.md has 11 and 12 at 10^6 genes)")  # fmt: skip
    e.add_argument("--ray", action="store_true",
                   help="build the shards in parallel, a Ray task each (joins RAY_ADDRESS if set; on a cluster --out "
                   "must be on storage every node sees)")  # fmt: skip
    e.add_argument("--ray-workers", type=int_option("workers"), default=2, help="shards built at once with --ray")
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is an index directory gene-ae embed wrote (its index.json says so); any other "
        "existing file or directory is refused, never deleted",
    )
    e.add_argument(
        "--shard-records", type=int_option("shard_records"), default=0, metavar="N",
        help="write the index in shards of N records (searched as one; each can be built and held apart; with a "
        "limit of bases too, whichever comes first)",
    )  # fmt: skip
    e.add_argument(
        "--shard-bases", type=int_option("shard_bases"), default=None, metavar="N",
        help=f"start a new shard after N bases (bounds memory while building; searched as one index; 0: no "
        f"limit); None: {SHARD_BASES:,}, or no limit when a number of records is given",
    )  # fmt: skip
    e.add_argument(
        "--append", action="store_true",
        help="add the records of --input to the index --out as one more shard, with the index's model and "
        "settings; nothing already indexed is embedded again",
    )  # fmt: skip
    e.add_argument(
        "--replace", action="store_true",
        help="with --append: records whose ids the index already holds replace them (else such ids are refused)",
    )  # fmt: skip
    reader_args(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.append:
        return _append(args)
    if args.replace:
        raise ValueError("--replace goes with --append")
    if not args.model:
        raise ValueError("--model is required (except with --append, which uses the index's model)")
    from itertools import chain

    from gene_ae.core.records import iter_input
    from gene_ae.index import build
    from gene_ae.index.directory import check_replaceable
    from gene_ae.index.kmer_index import KmerIndexConfig
    from gene_ae.model.encoder import Encoder
    from gene_ae.registry.tracking import pinned_uri, resolve_version
    from shard_tools.record import display_name

    check_replaceable(args.out, args.overwrite)  # before the model loads or anything is read
    check_out_dir(args.out, replaced=True)
    records = iter_input(args.input, reader_config(args))
    first = next(records, None)  # only the first record is read before the model loads (stdin stays a stream)
    if first is None:
        raise ValueError(f"{display_name(args.input)}: no sequences to embed")
    version = resolve_version(args.model)
    # The index records the exact version (an alias moves; search must embed with the model that built it).
    model_uri = str(Path(args.model).resolve()) if Path(args.model).exists() else pinned_uri(args.model, version)
    encoder = Encoder.load(model_uri)
    needed = encoder.check_features(_features(args), "--input")
    bags = encoder.bag_tables() if args.no_kmers else None  # searched by vector: its queries embedded without torch
    model = build.ModelInfo(uri=model_uri, version=version, dim=encoder.dim, window=encoder.window, features=needed,
                            bags=bags)  # fmt: skip
    cfg = build.BuildConfig(
        args.index_kind, not args.no_windows, args.stride, batch_size=args.batch_size, features=_features(args),
        codec=args.vector_codec, kmers=KmerIndexConfig(k=args.kmer_k, scaled=args.kmer_scaled),
        window_min=args.window_min, sparse=not args.no_kmers,
    )  # fmt: skip
    records = chain([first], records)
    bases = args.shard_bases if args.shard_bases is not None else 0 if args.shard_records else build.SHARD_BASES
    limits = build.ShardLimits(args.shard_records, bases)
    if args.ray:
        from gene_ae.index.parallel import build_collection_ray

        metas = build_collection_ray(
            records, model, args.out, cfg, limits, args.overwrite, args.input, args.ray_workers
        )
    else:
        embed = build.LocalEmbed(encoder, args.batch_size)
        metas = build.build_collection(records, embed, model, args.out, cfg, limits, args.overwrite, args.input)
    meta = metas[0]
    print(
        f"gene-ae embed: {sum(len(m.entries) for m in metas):,} records in {len(metas)} shard"
        f"{'s' if len(metas) > 1 else ''} ({meta.kind}, dim {encoder.dim}"
        f"{', with window vectors' if any(m.windows for m in metas) else ''}"
        f"{', k-mer index' if meta.sparse else ', no k-mer index'}, sequences) "
        f"from {args.input} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _features(args: argparse.Namespace) -> dict[str, str]:
    """The input's features as name -> kind (what the index stores)."""
    return declared_features(args, args.input)


def _append(args: argparse.Namespace) -> int:
    from gene_ae.core.records import iter_input
    from gene_ae.index import build
    from gene_ae.index.collection import Collection, writing
    from gene_ae.model.encoder import Encoder

    if args.overwrite or args.shard_records or args.shard_bases is not None:
        raise ValueError("--append adds one shard to an existing index: it takes no --overwrite, --shard-records "
                         "or --shard-bases")  # fmt: skip
    built = build.BuildConfig()  # the defaults: a flag left at its default is not one the user gave
    build_flags = {
        "--index-kind": ("index_kind", built.kind), "--no-windows": ("no_windows", not built.windows),
        "--stride": ("stride", built.stride), "--vector-codec": ("vector_codec", built.codec),
        "--kmer-scaled": ("kmer_scaled", built.kmers.scaled), "--window-min": ("window_min", built.window_min),
        "--kmer-k": ("kmer_k", built.kmers.k), "--no-kmers": ("no_kmers", not built.sparse),
    }  # fmt: skip
    for flag, (name, default) in build_flags.items():
        if getattr(args, name) != default:
            raise ValueError(f"--append builds the new shard with the index's own settings: leave {flag} out")
    with writing(args.out):  # one writer from the first read: a second is refused before this reads anything
        collection = Collection.open(args.out)  # checked before anything is embedded
        meta = collection.meta
        if args.model and args.model != meta.model_uri:
            raise ValueError(
                f"{args.out}: was built with {meta.model_uri}; --append uses that model (leave --model out)"
            )
        declared = _features(args)
        for name, kind in meta.features.items():  # else the new records would hold no value for it, silently
            if declared.get(name) != kind:
                raise ValueError(
                    f"{args.input}: the index {args.out} holds the feature {name!r} ({kind}) for every record: declare "
                    f"it with --feature-column {name}:{kind}"
                )
        records = list(iter_input(args.input, reader_config(args)))
        if not records:
            raise ValueError(f"{args.input}: no sequences to embed")
        new_ids = {r.id for r in records}
        old = [j for j, i in enumerate(collection.entries.ids) if i in new_ids and not collection.removed[j]]
        if old and not args.replace:
            raise ValueError(f"{args.input}: record {collection.entries.ids[old[0]]!r} is already in {args.out} "
                             f"({len(old):,} such records): give --replace to replace them")  # fmt: skip
        encoder = Encoder.load(meta.model_uri)
        needed = encoder.check_features(meta.features, "--input")
        embed = build.LocalEmbed(encoder, args.batch_size)
        added = build.append_shard(
            iter(records), embed, args.out, source=args.input, remove=old, features=needed, locked=True
        )
    print(f"gene-ae embed: {len(added.entries):,} records appended to {args.out} as one more shard"
          f"{f', replacing {len(old):,}' if old else ''}", file=sys.stderr)  # fmt: skip
    return 0
