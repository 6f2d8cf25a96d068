"""`gene-ae verify`: read every part of an index and check it (gene_ae/index/verify.py)."""

from __future__ import annotations

import argparse
import sys

from gene_ae.cli.common import subcommand


def add_parser(sub, version: str) -> None:
    v = subcommand(sub, "verify", "check every part of an index in full (after a copy or a disk error)", version)
    v.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gene_ae.index.verify import verify

    done = verify(args.index)
    print(f"gene-ae verify: {args.index}: {done.shards} shard{'s' * (done.shards != 1)}, {done.records:,} records, "
          f"{done.files} files ({done.bytes / 1e6:,.1f} MB): every sha256 index.json records, every record id "
          "and label, k-mer row, sequence block and record vector read: OK", file=sys.stderr)  # fmt: skip
    return 0
