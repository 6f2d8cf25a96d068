"""Command lines `shard-fasta` and `shard-verify`: parse arguments, call the library, one-line errors.

Defaults and numeric ranges come from ReaderConfig and ShardConfig, so the help and the library agree.
Exit status: 0 done, 1 error (bad input or arguments; nothing written), 130 interrupted (nothing written).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from shard_tools import __version__
from shard_tools.cpus import usable_cpus
from shard_tools.declared import parse_feature_column
from shard_tools.detect import FORMATS
from shard_tools.files import take_signals
from shard_tools.inputs import ReaderConfig, check_input_paths, read_records
from shard_tools.options import Parser, Range, number
from shard_tools.reader import ShardError
from shard_tools.record import STDIN, InputError, Record
from shard_tools.text import printable
from shard_tools.verify import verify
from shard_tools.writer import ShardConfig, ShardWriter

MB = 2**20
# Numeric ShardConfig fields as options: flag, field, type, help (the default and range come from ShardConfig).
_SHARD_NUMBERS = (
    ("--val-fraction", "val_fraction", float, "fraction for the validation split, chosen by sequence content"),
    ("--block-bases", "block_bases", int, "bases per compressed block; longer records are stored in parts"),
    ("--level", "level", int, "zstd level (None: chosen per block)"),
    ("--min-length", "min_length", int, "drop records shorter than this"),
    ("--workers", "workers", int, "processes compressing blocks"),
)


def _progress(records: Iterator[Record], enabled: bool) -> Iterator[Record]:
    """A record counter on a terminal; silent in CI and pipes."""
    if not enabled:
        return records
    from tqdm import tqdm

    return iter(tqdm(records, unit=" rec", desc="shard-fasta", file=sys.stderr))


def _records(inputs: list[str], cfg: ReaderConfig, skipped: list[str], found: dict[str, int]) -> Iterator[Record]:
    """Every input's records; `found` counts, per declared feature, the records that hold a value."""
    for path in inputs:
        for rec in read_records(path, cfg, skipped):
            for name, value in rec.features.items():
                found[name] += value is not None
            yield rec


def _workers(asked: int, quiet: bool) -> int:
    """--workers capped at the CPUs this process may use: more processes only add start-up and switching."""
    cap = usable_cpus()
    if asked > cap and not quiet:
        print(f"shard-fasta: note: --workers {asked} capped at {cap}, the CPUs this process may use", file=sys.stderr)
    return min(asked, cap)


def _parser() -> Parser:
    reader, shard = ReaderConfig(), ShardConfig()
    p = Parser(
        prog="shard-fasta",
        version=__version__,
        description="Turn sequence files into verified, compact WebDataset tar shards with a manifest.json: "
        "FASTA, FASTQ, GenBank, EMBL or TSV/CSV tables, plain or .gz/.bz2/.xz/.zst, or '-' for standard input. "
        "A record's id is its header up to the first whitespace (space or tab).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="sequence files; '-' reads standard input")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory, created; refused if it exists (--overwrite)")
    p.add_argument(
        "--format", choices=("auto", *FORMATS), default=reader.format, help="input format; auto: by content and name"
    )
    p.add_argument("--seq-column", default=reader.seq_column, help="table column holding the sequence")
    p.add_argument("--id-column", default=reader.id_column, help="table column holding the id (None: row number)")
    p.add_argument("--label-column", default=reader.label_column, help="table column stored as the record's label")
    p.add_argument(
        "--feature-column", action="append", default=[], metavar="NAME[:numeric|categorical]",
        help="keep a per-record feature (repeatable): a table column, a FASTA/FASTQ header NAME=value pair or a "
        "GenBank/EMBL source qualifier (organism, strain, db_xref, note, ...); categorical unless :numeric",
    )  # fmt: skip
    p.add_argument(
        "--shard-size",
        type=number(float, Range(0, low_open=True)),
        default=shard.shard_bytes / MB,
        help="target shard size in MB (> 0)",
    )
    for flag, name, kind, text in _SHARD_NUMBERS:
        limit = ShardConfig.LIMITS[name]
        p.add_argument(flag, type=number(kind, limit), default=getattr(shard, name), help=f"{text} ({limit})")
    p.add_argument("--max-length", type=number(int, Range(1)), default=reader.max_length, metavar="BASES",
                   help="longest record read (every format); a longer one is an error naming it, so memory stays "
                   "bounded (about 3 bytes a base of this)")  # fmt: skip
    p.add_argument("--dedup", action="store_true", help="drop exact duplicate sequences")
    p.add_argument("--skip-invalid", action="store_true", help="skip and count bad records instead of failing")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT_DIR if it is a shard directory this tool wrote (its manifest.json and the shards it "
        "lists, nothing else); any other existing file or directory is refused, never deleted",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def shard_fasta_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    skipped: list[str] = []
    try:
        features = tuple(parse_feature_column(f) for f in args.feature_column)
        reader_cfg = ReaderConfig(
            args.format, args.seq_column, args.id_column, args.label_column, args.skip_invalid, features,
            max_length=args.max_length,
        )  # fmt: skip
        if args.inputs.count(STDIN) > 1:
            raise ValueError("'-' (standard input) can be given only once")
        check_input_paths(args.inputs)
        numbers = {name: getattr(args, name) for _, name, _, _ in _SHARD_NUMBERS}
        numbers["workers"] = _workers(args.workers, args.quiet)
        cfg = ShardConfig(shard_bytes=int(args.shard_size * MB), dedup=args.dedup, **numbers)
        writer = ShardWriter(Path(args.out_dir), cfg, overwrite=args.overwrite)
        sizes = {f: os.path.getsize(f) if f != STDIN and os.path.isfile(f) else None for f in args.inputs}
        found = dict.fromkeys((f.name for f in features), 0)
        records = _progress(_records(args.inputs, reader_cfg, skipped, found), sys.stderr.isatty() and not args.quiet)
        writer.summary.input_bytes = sum(s or 0 for s in sizes.values())
        manifest = writer.write(
            records,
            {
                "command": ["shard-fasta", *(argv if argv is not None else sys.argv[1:])],
                "inputs": [{"path": str(f), "bytes": size} for f, size in sizes.items()],
                "skipped": skipped,
                "features": {f.name: f.kind for f in features},
            },
        )
    except (InputError, FileExistsError, ValueError, OSError) as exc:
        print(f"shard-fasta: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shard-fasta: interrupted; nothing written", file=sys.stderr)
        return 130
    summary = writer.summary
    if summary.records == 0:
        print(f"shard-fasta: warning: no records in {printable(', '.join(args.inputs))}", file=sys.stderr)
    for name, count in found.items():
        if summary.records and not count:  # a typo, or a FASTA header without NAME=value pairs
            print(f"shard-fasta: warning: feature {name!r} has no value in any of the {summary.records:,} records "
                  "(misspelt? FASTA/FASTQ headers hold NAME=value pairs; docs/INPUTS.md)", file=sys.stderr)  # fmt: skip
    if summary.duplicate_ids:
        print(
            f"shard-fasta: warning: {summary.duplicate_ids:,} records reuse an earlier record's id (first: "
            f"{writer.first_duplicate_id!r}); all are kept, each with its own unique key",
            file=sys.stderr,
        )
    if not args.quiet:
        for line in skipped[:10]:
            print(f"shard-fasta: skipped {printable(line)}", file=sys.stderr)
        counts = ", ".join(
            f"{s}: {v['sequences']:,} seqs in {len(v['shards'])} shards" for s, v in manifest["splits"].items()
        )
        print(f"shard-fasta: {summary.line()}; {counts} -> {printable(args.out_dir)}", file=sys.stderr)
    return 0


def shard_verify_main(argv: list[str] | None = None) -> int:
    p = Parser(
        prog="shard-verify",
        version=__version__,
        description="Check a shard directory: re-read every shard against its manifest.json (schema, sha256, "
        "sizes, decoding; every sample, part, record and base count and length histogram recomputed) and refuse "
        "files it does not list. Exit 1 naming the first fault.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="shard directory written by shard-fasta")
    args = p.parse_args(argv)
    try:
        totals = verify(args.out_dir)
    except (ShardError, OSError, ValueError) as exc:
        print(f"shard-verify: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    print(
        f"shard-verify: ok: {totals['shards']} shards, {totals['samples']} samples, "
        f"{totals['parts']} record parts, {totals['bases']:,} bases"
    )
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main_shard_fasta() -> None:
    # SIGTERM's default action would kill the process without cleaning up the hidden temp directory.
    signal.signal(signal.SIGTERM, _interrupt)
    take_signals()
    sys.exit(shard_fasta_main())


def main_shard_verify() -> None:
    sys.exit(shard_verify_main())
