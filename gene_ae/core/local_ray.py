"""The one way gene-ae starts a Ray of its own (no RAY_ADDRESS): a new local instance that listens on loopback only.

A Ray node's servers (GCS, raylet, object manager, workers, the dashboard agent and its metrics, the runtime-env
agent) listen on its node IP, and Ray 2.60 on Linux makes that the machine's routable address even when asked for
127.0.0.1 (`services.resolve_ip_for_localhost` swaps loopback for it), so they were reachable from the network.
Ray keeps a loopback node where it runs without clusters (macOS and Windows by default, the
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER switch, read at import into `ray_constants.ENABLE_RAY_CLUSTER`); clearing that
flag for the one ray.init call that starts the node makes every server bind 127.0.0.1, and the node's IP is
checked afterwards so that a Ray that stops honouring it fails loudly instead of listening everywhere. Ray Serve
binds each replica's inter-deployment gRPC server to "[::]:0" whatever the node IP; a Ray that will run Serve gets a
worker setup hook that moves it to loopback too. Joining a cluster (RAY_ADDRESS) is a plain ray.init and changes
nothing; Serve's HTTP proxy still listens on the `http_options` host the user asked for.

Every worker of a Ray started here knows its own cluster (the `own_cluster` setup hook): Ray's state API, which Ray
Train's placement-group cleaner calls every few seconds from a worker, otherwise looks for "the" Ray on the machine
and, with two running (two trainings, a training beside `serve --index`, the test suite's two processes), stopped
with "Found multiple active Ray instances" and a traceback in the user's terminal.
"""

from __future__ import annotations

import ipaddress
from typing import Any

LOOPBACK = "127.0.0.1"


def local_ray_options() -> dict[str, Any]:
    """ray.init's keywords for a Ray started here: always a new instance (never one a `ray start` on this machine
    left behind, whose ports gene-ae does not choose), its node and dashboard on loopback."""
    return {"address": "local", "_node_ip_address": LOOPBACK, "dashboard_host": LOOPBACK}


def start_local_ray(*, serve: bool = False, **options: Any) -> None:
    """ray.init(**options) starting a local Ray bound to loopback; options are the caller's own (resources,
    runtime env, logging), never an address or a host. serve: the Ray will run Ray Serve replicas."""
    import ray
    from ray._private import ray_constants

    hook = f"{__name__}.{(replica_grpc_on_loopback if serve else own_cluster).__name__}"
    options["runtime_env"] = {**(options.get("runtime_env") or {}), "worker_process_setup_hook": hook}
    clusters = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # only while the node IP is chosen; the started node keeps it
    try:
        ray.init(**options, **local_ray_options())
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = clusters
    node = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node).is_loopback:
        ray.shutdown()
        raise RuntimeError(
            f"the local Ray started on {node}, not loopback: its ports would be reachable beyond this machine "
            "(this Ray no longer honours ray_constants.ENABLE_RAY_CLUSTER; see gene_ae/core/local_ray.py)"
        )


def own_cluster() -> None:
    """Ray worker setup hook of every local Ray: RAY_ADDRESS is this Ray's GCS in its workers, so that Ray's own
    lookups of "the" cluster there find this one, however many Rays the machine runs."""
    import os

    import ray

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def replica_grpc_on_loopback() -> None:
    """Ray worker setup hook of a local Ray running Serve: `own_cluster`, and a replica's inter-deployment gRPC
    server binds 127.0.0.1 instead of Serve's "[::]" (its callers dial the node IP, loopback here)."""
    from ray.serve._private import replica

    own_cluster()

    bind = replica.add_port_to_grpc_server

    def on_loopback(server: Any, address: str) -> int:
        return bind(server, address.replace("[::]", LOOPBACK, 1))

    replica.add_port_to_grpc_server = on_loopback
