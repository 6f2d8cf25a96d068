"""`gene-ae reconstruct`: decode each record from its latent alone; identity to the input."""

from __future__ import annotations

import argparse
import sys

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
    from shard_tools.record import display_name

    check_out_file(args.out, reads=(args.input,))  # before the model loads or anything is read
    records = iter_input(args.input, reader_config(args))
    first = next(records, None)  # a stream stays a stream: only its first record is read before the model loads
    if first is None:
        raise ValueError(f"{display_name(args.input)}: no sequences to reconstruct")
    encoder = Encoder.load(args.model)

    total = [0, 0]  # bases right, bases

    def lines():
        yield output.row(("id", "length", "identity", "reconstruction"))
        for record in chain([first], records):
            rec = encoder.reconstruct_tokens(record.tokens)
            right = int((rec == record.tokens).sum())
            total[0], total[1] = total[0] + right, total[1] + record.tokens.size
            yield output.row((record.id, record.tokens.size, f"{right / record.tokens.size:.4f}", decode(rec)))

    output.emit(lines(), args.out)
    m = encoder.cfg
    stored = f"{m.latent_levels} levels a value" if m.latent_levels else "float32 values"
    print(f"gene-ae reconstruct: identity {total[0] / max(total[1], 1):.4f} over {total[1]:,} bases, from a latent "
          f"of {m.latent_bits_per_base:g} bits a base as stored ({stored})", file=sys.stderr)  # fmt: skip
    return 0
