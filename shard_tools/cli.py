"""Command lines `shard-fasta` and `shard-verify`: parse arguments, call the library, one-line errors."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from shard_tools.inputs import FORMATS, InputError, ReaderConfig, Record, read_records
from shard_tools.reader import ShardError
from shard_tools.verify import verify
from shard_tools.writer import ShardConfig, ShardWriter


def _progress(records: Iterator[Record], enabled: bool) -> Iterator[Record]:
    """A record counter on a terminal; silent in CI and pipes."""
    if not enabled:
        return records
    from tqdm import tqdm

    return iter(tqdm(records, unit=" rec", desc="shard-fasta", file=sys.stderr))


def _records(inputs: list[str], cfg: ReaderConfig, skipped: list[str]) -> Iterator[Record]:
    for path in inputs:
        if not os.path.isfile(path):
            raise InputError(path, "no such file")
        yield from read_records(path, cfg, skipped)


def shard_fasta_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="shard-fasta",
        description="Turn FASTA/FASTQ/TSV/CSV files (plain, .gz, .bz2, .xz, .zst) into verified, compact "
        "WebDataset tar shards with a manifest.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="sequence files")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (refused if it exists, see --overwrite)")
    p.add_argument("--format", choices=("auto", *FORMATS), default="auto", help="input format (default: detect)")
    p.add_argument("--seq-column", default="sequence", help="table column holding the sequence")
    p.add_argument("--id-column", default=None, help="table column holding the id (default: row number)")
    p.add_argument("--label-column", default=None, help="table column stored as the record's label")
    p.add_argument("--val-fraction", type=float, default=0.05, help="fraction for the validation split (by content)")
    p.add_argument("--shard-size", type=float, default=64, help="target shard size in MB")
    p.add_argument("--block-bases", type=int, default=ShardConfig.block_bases, help="bases per compressed block")
    p.add_argument("--level", type=int, default=None, help="zstd level 1-22 (default: auto per block)")
    p.add_argument("--min-length", type=int, default=1, help="drop records shorter than this")
    p.add_argument("--dedup", action="store_true", help="drop exact duplicate sequences")
    p.add_argument("--skip-invalid", action="store_true", help="skip and count bad records instead of failing")
    p.add_argument("--workers", type=int, default=1, help="processes compressing blocks")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = p.parse_args(argv)
    reader_cfg = ReaderConfig(args.format, args.seq_column, args.id_column, args.label_column, args.skip_invalid)
    cfg = ShardConfig(
        val_fraction=args.val_fraction,
        shard_bytes=int(args.shard_size * 2**20),
        block_bases=args.block_bases,
        level=args.level,
        min_length=args.min_length,
        dedup=args.dedup,
        workers=args.workers,
    )
    skipped: list[str] = []
    try:
        if not 0 <= cfg.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in [0, 1), got {cfg.val_fraction}")
        writer = ShardWriter(Path(args.out_dir), cfg, overwrite=args.overwrite)
        total = sum(os.path.getsize(f) for f in args.inputs if os.path.isfile(f))
        records = _progress(_records(args.inputs, reader_cfg, skipped), sys.stderr.isatty() and not args.quiet)
        inputs = [{"path": str(f), "bytes": os.path.getsize(f) if os.path.isfile(f) else 0} for f in args.inputs]
        writer.summary.input_bytes = total
        manifest = writer.write(
            records,
            {
                "command": ["shard-fasta", *(argv if argv is not None else sys.argv[1:])],
                "inputs": inputs,
                "skipped": skipped,
            },
        )
    except (InputError, FileExistsError, ValueError, OSError) as exc:
        print(f"shard-fasta: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shard-fasta: interrupted; nothing written", file=sys.stderr)
        return 130
    summary = writer.summary
    if summary.records == 0:
        print(f"shard-fasta: warning: no records in {', '.join(args.inputs)}", file=sys.stderr)
    if not args.quiet:
        for line in skipped[:10]:
            print(f"shard-fasta: skipped {line}", file=sys.stderr)
        counts = ", ".join(
            f"{s}: {v['sequences']:,} seqs in {len(v['shards'])} shards" for s, v in manifest["splits"].items()
        )
        print(f"shard-fasta: {summary.line()}; {counts} -> {args.out_dir}", file=sys.stderr)
    return 0


def shard_verify_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="shard-verify",
        description="Re-read every shard and check it against the "
        "manifest (sha256, counts, decoding). Exit 1 naming the first bad shard.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR")
    args = p.parse_args(argv)
    try:
        totals = verify(args.out_dir)
    except (ShardError, OSError, ValueError) as exc:
        print(f"shard-verify: error: {exc}", file=sys.stderr)
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
    sys.exit(shard_fasta_main())


def main_shard_verify() -> None:
    sys.exit(shard_verify_main())
