"""What the subcommands share: the input-reading options, numeric option ranges, the model URI help."""

from __future__ import annotations

import argparse

from shard_tools.inputs import FORMATS
from shard_tools.options import Limit, Parser, number

MODEL_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or a checkpoint directory"
# Numeric option ranges, checked while the command line is parsed (shard_tools.options); search.engine.search
# checks k and rerank again for library callers.
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


def int_option(name: str):
    """An argparse type: an int within LIMITS[name], else a one-line usage error."""
    return number(int, LIMITS[name])


def subcommand(sub, name: str, what: str, version: str, **kwargs) -> Parser:
    """A subcommand whose --help starts with what it does."""
    return sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".", version=version, **kwargs)


def reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), help="input format; auto: by content and name"
    )
    p.add_argument("--seq-column", default="sequence", help="table column holding the sequence")
    p.add_argument("--id-column", default=None, help="table column holding the id (None: row number)")
    p.add_argument("--label-column", default=None, help="table column holding a label (e.g. class)")


def reader_config(args: argparse.Namespace):
    from shard_tools.inputs import ReaderConfig

    return ReaderConfig(args.format, args.seq_column, args.id_column, args.label_column)
