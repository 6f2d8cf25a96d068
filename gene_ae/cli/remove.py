"""`gene-ae remove`: remove records from an index by id (search never returns them again)."""

from __future__ import annotations

import argparse
import sys

from gene_ae.cli.common import subcommand


def add_parser(sub, version: str) -> None:
    r = subcommand(sub, "remove", "remove records from an index by id; to replace them, embed --append --replace",
                   version)  # fmt: skip
    r.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    r.add_argument("ids", nargs="+", help="ids of the records to remove (every record with that id)")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gene_ae.index.build import remove_records

    n = remove_records(args.index, args.ids)
    print(f"gene-ae remove: {n:,} records removed from {args.index}", file=sys.stderr)
    return 0
