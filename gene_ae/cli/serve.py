"""`gene-ae serve`: the encoder over HTTP through this venv's `mlflow models serve` (--model), or a sharded index
on Ray Serve (--index: one deployment per index shard, POST JSON sequences, get hits; gene_ae/search/serve_index.py)."""

from __future__ import annotations

import argparse
import os
import sys

from gene_ae.cli.common import int_option, subcommand
from shard_tools.options import Range, number

PROXIES = ("HeadOnly", "EveryNode")


def add_parser(sub, version: str) -> None:
    from gene_ae.registry.serve_model import DEFAULT_PORT, SERVED_MODEL_HELP
    from gene_ae.search.serve_index import ServeConfig

    cfg = ServeConfig()
    sv = subcommand(sub, "serve", "serve an encoder (POST /invocations) or a sharded index (POST /search) over HTTP",
                    version)  # fmt: skip
    sv.add_argument(
        "--model",
        help=f"the encoder to serve: {SERVED_MODEL_HELP}; refused with --index, whose search reads no vectors",
    )
    sv.add_argument("--index", help="serve this index directory's search on Ray Serve (RAY_ADDRESS: join that cluster)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=int_option("port"), default=DEFAULT_PORT, help="port to listen on")
    sv.add_argument("--replicas", type=number(int, Range(1, 1000)), default=cfg.replicas,
                    help="--index: replicas of each shard's deployment and of the ingress")  # fmt: skip
    sv.add_argument("--replica-cpus", type=number(float, Range(0, None, low_open=True)), default=cfg.cpus,
                    help="--index: CPUs each replica reserves")  # fmt: skip
    sv.add_argument("--proxy", choices=PROXIES, default=PROXIES[0],
                    help="--index: where Serve's HTTP proxies run (EveryNode: one a node, same port)")  # fmt: skip
    sv.add_argument("--batch-size", type=int_option("batch_size"), default=cfg.batch_size,
                    help="--index: encoder batch size")  # fmt: skip
    sv.add_argument("--shard-timeout", type=number(float, Range(0, 86_400, low_open=True)),
                    default=cfg.shard_timeout_s, metavar="S",
                    help="--index: seconds one shard's answer may take before it is asked again")  # fmt: skip
    sv.add_argument("--retries", type=number(int, Range(0, 100)), default=cfg.retries,
                    help="--index: further tries of a shard that failed or timed out, with doubling waits; then "
                    "the request is answered 503, or flagged partial if it sent allow_partial")  # fmt: skip
    sv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.index is not None:
        return _serve_index(args)
    if args.model is None:
        raise ValueError("give --model (serve an encoder) or --index (serve an index's search)")
    return _serve_model(args)


def _serve_model(args: argparse.Namespace) -> int:
    """Replace this process with `mlflow models serve`, found and run from this venv (no activation needed), once
    the port is free and the model is found (one-line errors, before MLflow loads anything)."""
    from gene_ae.registry.serve_model import check_listen, check_model, serve_command, serve_env

    check_listen(args.host, args.port)
    check_model(args.model)
    cmd = serve_command(args.model, args.host, args.port)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, serve_env())
    return 0  # not reached


def _serve_index(args: argparse.Namespace) -> int:
    """Deploy the index on the Ray cluster at RAY_ADDRESS (else a Ray started here), print the URL, block until
    interrupted, then delete the application. The model is loaded and checked here first (one-line errors)."""
    import signal
    import threading
    from functools import partial

    import ray
    from ray import serve

    from gene_ae.core.local_ray import start_local_ray
    from gene_ae.index.directory import IndexDir
    from gene_ae.registry.serve_model import check_listen
    from gene_ae.search import serve_index as served
    from gene_ae.search.searcher import search_model

    load = partial(search_model, model=args.model, batch_size=args.batch_size)
    load(IndexDir.open(args.index))  # the index opens and the model is its own, before anything is deployed
    cfg = served.ServeConfig(replicas=args.replicas, cpus=args.replica_cpus, batch_size=args.batch_size,
                             retries=args.retries, shard_timeout_s=args.shard_timeout)  # fmt: skip
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):  # a cluster: the layout against its free CPUs, once joined
        ray.init(logging_level="WARNING", log_to_driver=False)
        try:
            served.check_cpus(args.index, cfg, ray.available_resources(), [n.get("Resources", {}) for n in ray.nodes()])
        except ValueError:
            ray.shutdown()
            raise
    else:  # a Ray started here has this machine's CPUs, all free: the layout is checked before it starts
        check_listen(args.host, args.port)
        cpus = os.cpu_count() or 1
        served.check_cpus(args.index, cfg, {"CPU": cpus}, [{"CPU": cpus}])
        # Ray's own ports on loopback; the HTTP proxy listens on --host (http_options)
        start_local_ray(serve=True, num_cpus=cpus, logging_level="WARNING", log_to_driver=False)
    url = served.deploy(args.index, load, cfg, args.host, args.port, proxy=args.proxy)
    print(url, flush=True)
    print(f"gene-ae serve: {args.index} at {url} (POST JSON sequences; Ctrl-C stops)", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(served.APP_NAME)
    return 0


def app(args: dict):
    """A Serve application builder for a config file or KubeRay's RayService (import_path gene_ae.cli.serve:app,
    args: index, and optionally model, replicas, cpus, batch_size, retries, shard_timeout_s)."""
    from functools import partial

    from gene_ae.search import serve_index as served
    from gene_ae.search.searcher import search_model
    from gene_ae.search.serve_index import ServeConfig

    cfg = ServeConfig(
        replicas=int(args.get("replicas", 1)), cpus=float(args.get("cpus", 1.0)),
        batch_size=int(args.get("batch_size", 64)), retries=int(args.get("retries", ServeConfig.retries)),
        shard_timeout_s=float(args.get("shard_timeout_s", ServeConfig.shard_timeout_s)),
    )  # fmt: skip
    load = partial(search_model, model=args.get("model"), batch_size=cfg.batch_size)
    return served.build_app(args["index"], load, cfg)
