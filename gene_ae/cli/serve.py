"""`gene-ae serve`: the encoder over HTTP through this venv's `mlflow models serve`."""

from __future__ import annotations

import argparse
import os
import sys

from gene_ae.cli.common import int_option, subcommand


def add_parser(sub, version: str) -> None:
    from gene_ae.registry.serving import DEFAULT_PORT

    sv = subcommand(sub, "serve", "serve an encoder over HTTP (mlflow models serve; POST /invocations)", version)
    sv.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/encoder")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=int_option("port"), default=DEFAULT_PORT, help="port to listen on")
    sv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replace this process with `mlflow models serve`, found and run from this venv (no activation needed), once
    the port is free and the model is found (one-line errors, before MLflow loads anything)."""
    from gene_ae.registry.serving import check_listen, check_model, serve_command, serve_env

    check_listen(args.host, args.port)
    check_model(args.model)
    cmd = serve_command(args.model, args.host, args.port)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, serve_env())
    return 0  # not reached
