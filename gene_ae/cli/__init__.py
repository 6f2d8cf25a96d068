"""`gene-ae embed | search | remove | verify | eval | reconstruct | promote | serve`: one module per subcommand,
each a thin parser over the library (`add_parser` and `run`).

Usage errors (a bad number, an unknown choice) are one line and exit 1 while parsing (shard_tools.options);
library errors become one line and exit 1 in `main`.
"""

from __future__ import annotations

import faulthandler
import gc
import importlib
import os
import signal
import sys
import threading

from shard_tools.files import take_signals
from shard_tools.options import Parser
from shard_tools.text import printable

# subcommand -> its module (gene_ae/cli/MODULE.py), in --help order
SUBCOMMANDS = {"embed": "embed", "search": "search", "remove": "remove", "verify": "verify", "eval": "evaluate",
               "reconstruct": "reconstruct", "promote": "promote", "serve": "serve"}  # fmt: skip


def _version() -> str:
    import shard_tools

    return shard_tools.__version__


def build_parser(argv: list[str] | None = None) -> Parser:
    """The whole parser; given the command line, only the subcommand it names is built in full (its module and
    the defaults it shows imported), the others as names: a one-query search starts faster."""
    p = Parser(
        prog="gene-ae",
        version=_version,
        description="Embed DNA sequences with a trained gene-ae encoder, "
        "search collections by vector similarity, evaluate against k-mer methods, serve the encoder.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((a for a in argv or () if not a.startswith("-")), None)
    chosen = named if named in SUBCOMMANDS else None
    for name, module in SUBCOMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(f"gene_ae.cli.{module}").add_parser(sub, _version)
        else:
            sub.add_parser(name, version=_version)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every atomic writer removes its temporary files, as Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    # Start-up (the imports, the parser) makes objects that live to the end: collecting them finds nothing and cost
    # a few % of a one-query search (docs/BENCHMARKS.md, stop 48); collection resumes once the command is parsed.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from gene_ae.registry.tracking import bound_requests

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        bound_requests()  # every request to a tracking server times out
        args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    finally:
        if collecting:
            gc.enable()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        take_signals()  # Ctrl-C and SIGTERM reach this thread even if the parent had them blocked
        # `kill -USR1 PID` prints where every thread of a command that seems stuck is, and it goes on
        if sys.__stderr__ is not None:  # the process's own stderr (a test may capture sys.stderr)
            faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True, chain=False)
    try:
        code = args.func(args)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: one line; the atomic writers left nothing half-written
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"gene-ae {args.command}: {what}; outputs are written whole or not at all", file=sys.stderr)
        code = 143 if isinstance(exc, Terminated) else 130
    except (ValueError, OSError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"gene-ae {args.command}: error: {printable(msg)}", file=sys.stderr)
        code = 1
    except Exception as exc:  # MLflow registry errors and the like: still one line
        if type(exc).__name__ not in ("MlflowException", "RestException"):
            raise
        print(f"gene-ae {args.command}: error: {printable(str(exc).splitlines()[0])}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
