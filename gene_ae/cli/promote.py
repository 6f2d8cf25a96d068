"""`gene-ae promote`: point an alias (production) at a registered model version."""

from __future__ import annotations

import argparse

from gene_ae.cli.common import subcommand
from gene_ae.config import DEFAULT_MODEL_NAME


def add_parser(sub, version: str) -> None:
    m = subcommand(  # its --version is the model version, so it replaces the version action
        sub, "promote", "point an alias (e.g. production) at a registered model version", version,
        conflict_handler="resolve",
    )  # fmt: skip
    m.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name")
    m.add_argument("--version", required=True, help="registered version to point the alias at")
    m.add_argument("--alias", default="production", help="alias to set")
    m.add_argument("--if-better", action="store_true", help="only if its validation recall beats the holder's")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gene_ae.registry.tracking import promote_if_better, set_alias

    if args.if_better:
        won = promote_if_better(args.name, args.version, args.alias)
        print(f"gene-ae promote: {args.name}/{args.version} {'is now' if won else 'did not beat'} @{args.alias}")
    else:
        set_alias(args.name, args.version, args.alias)
        print(f"gene-ae promote: models:/{args.name}@{args.alias} -> version {args.version}")
    return 0
