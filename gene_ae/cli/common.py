"""What the subcommands share: the input-reading options, numeric option ranges, the model URI help, and the
checks of an --out made before any work (so a bad one is refused in one line naming it, not after the work
with a message about a hidden temporary file)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gene_ae.search.limits import SEARCH_LIMITS
from shard_tools.detect import FORMATS
from shard_tools.files import check_out_dir, writable_folder  # noqa: F401 (check_out_dir: the subcommands' import)
from shard_tools.inputs import DEFAULT_MAX_LENGTH
from shard_tools.options import Parser, Range, number
from shard_tools.record import STDIN
from shard_tools.text import printable

MODEL_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or a checkpoint directory"
# Numeric option ranges, checked while the command line is parsed (shard_tools.options); k and rerank are the
# search's own (gene_ae/search/limits.py, which the endpoint checks too).
LIMITS = {
    **SEARCH_LIMITS,
    "batch_size": Range(1),
    "stride": Range(0),
    "workers": Range(1),
    "threads": Range(1, 256),
    "shard_records": Range(0),
    "shard_bases": Range(0),
    "window_min": Range(0),
    "n_queries": Range(1),
    "align_queries": Range(0),
    "seed": Range(0),
    "port": Range(1, 65535),
    "kmer_scaled": Range(1, 1024),
    "kmer_k": Range(0, 31),
}


class Given(argparse.Action):
    """Stores an option's value and notes it as given (`given(args)`), so a preset such as `search --fast` leaves
    what the user set as set, whatever the order on the command line."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given_options = {*getattr(namespace, "given_options", ()), self.dest}


def given(args: argparse.Namespace) -> set[str]:
    """The dests of the `Given` options on this command line."""
    return set(getattr(args, "given_options", ()))


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
    p.add_argument(
        "--feature-column", action="append", default=[], metavar="NAME[:numeric|categorical]",
        help="a per-record feature to keep (repeatable): a table column, a FASTA header NAME=value pair or a "
        "GenBank/EMBL source qualifier; categorical unless :numeric (docs/INPUTS.md). A shard directory's "
        "features come from its manifest",
    )  # fmt: skip
    p.add_argument(
        "--max-length",
        type=number(int, Range(1)),
        default=DEFAULT_MAX_LENGTH,
        metavar="BASES",
        help="longest FASTA/FASTQ record read; a longer one is an error naming it (memory stays bounded)",
    )


def reader_config(args: argparse.Namespace):
    from shard_tools.declared import parse_feature_column
    from shard_tools.inputs import ReaderConfig

    features = tuple(parse_feature_column(f) for f in args.feature_column)
    return ReaderConfig(args.format, args.seq_column, args.id_column, args.label_column, features=features,
                        max_length=args.max_length)  # fmt: skip


def declared_features(args: argparse.Namespace, path: str | Path) -> dict[str, str]:
    """The input's features as name -> kind: a shard directory's from its manifest, else --feature-column's."""
    from shard_tools.record import STDIN

    if str(path) != STDIN and Path(path).is_dir():
        from shard_tools.reader import load_manifest

        return dict(load_manifest(path).get("features") or {})
    return {f.name: f.kind for f in reader_config(args).features}


def check_out_file(
    out: str | Path | None, flag: str = "--out", reads: Sequence[str | Path | None] = (),
    inside: Sequence[str | Path | None] = (),
) -> None:  # fmt: skip
    """Refuse an output file that could not be written: a directory, or a folder that is missing, not a folder,
    or not writable; and one that would destroy what the command reads: one of the files in `reads` (its input,
    also through a link), or a path inside one of the directories in `inside` (an index). The message names the
    path as typed."""
    if out is None:
        return
    path, shown = Path(out), printable(str(out))
    if not str(out) or path.is_dir():
        raise IsADirectoryError(f"{flag} {shown}: is a directory; give a file name")
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(f"{flag} {shown}: its folder {printable(str(parent))} does not exist")
    writable_folder(parent, flag, shown)
    for given in reads:
        if given is not None and str(given) != STDIN and path.exists() and Path(given).exists():
            if path.samefile(given):
                raise ValueError(f"{flag} {shown}: is the input {printable(str(given))}; writing there would "
                                 "replace it: give another file")  # fmt: skip
    for folder in inside:
        if folder is not None and Path(folder).is_dir() and path.resolve().is_relative_to(Path(folder).resolve()):
            raise ValueError(f"{flag} {shown}: inside the index {printable(str(folder))}, whose files it could "
                             "replace: write it elsewhere")  # fmt: skip
