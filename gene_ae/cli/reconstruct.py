"""`gene-ae reconstruct`: decode each record from its latent alone; identity to the input."""

from __future__ import annotations

import argparse

from gene_ae.cli.common import MODEL_HELP, check_out_file, reader_args, reader_config, subcommand


def add_parser(sub, version: str) -> None:
    r = subcommand(sub, "reconstruct", "decode each record from its latent and report identity to the input",
                    version)  # fmt: skip
    r.add_argument("--model", required=True, help=MODEL_HELP)
    r.add_argument("--input", required=True, help="FASTA/FASTQ/GenBank/EMBL/TSV file, or - for stdin")
    r.add_argument("--out", help="write TSV to this file (replaced whole, atomically) instead of stdout")
    reader_args(r)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itertools import chain

    from gene_ae.cli import output
    from gene_ae.core.records import iter_input
    from gene_ae.model.encoder import Encoder
    from shard_tools.alphabet import decode
    from shard_tools.inputs import display_name

    check_out_file(args.out)  # before the model loads or anything is read
    records = iter_input(args.input, reader_config(args))
    first = next(records, None)  # a stream stays a stream: only its first record is read before the model loads
    if first is None:
        raise ValueError(f"{display_name(args.input)}: no sequences to reconstruct")
    encoder = Encoder.load(args.model)

    def lines():
        yield output.row(("id", "length", "identity", "reconstruction"))
        for record in chain([first], records):
            rec = encoder.reconstruct_tokens(record.tokens)
            identity = float((rec == record.tokens).mean())
            yield output.row((record.id, record.tokens.size, f"{identity:.4f}", decode(rec)))

    output.emit(lines(), args.out)
    return 0
