"""`python -m services.console`: serve the built console on the topology's address until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import sys

import uvicorn
from pydantic import ValidationError

from services.console.app import build_app
from services.console.settings import SERVICE, ConsoleSettings
from services.core.asgi import DrainingServer
from services.core.errors import MLMeshError
from services.core.grpc.server import configure_logging
from services.core.settings import MeshSettings, ServerSettings
from services.core.topology import Topology, load_topology

SERVING = "serving"
REPLICA_HEADER = "x-mlmesh-replica"   # Envoy pins a call to the replica it names (services/mesh/envoy/config.py)


def serving_replicas(topology: Topology) -> list[str]:
    """Each serving replica's own name ("serving@host:port", consecutive ports from the entry's)."""
    endpoint = topology.services.get(SERVING)
    if endpoint is None:
        return []
    return [f"{SERVING}@{address}" for address in endpoint.replica_addresses]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.console", description=__doc__)
    parser.add_argument("--host", default=None, help="listen address (default: the topology's)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the topology's)")
    args = parser.parse_args(argv)
    server = ServerSettings()
    configure_logging(server.log_level, service=SERVICE)
    try:
        topology = load_topology(MeshSettings().topology_file)
        endpoint = topology.get(SERVICE)
        settings = ConsoleSettings()
    except (ValidationError, MLMeshError) as exc:
        print(f"console: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app = build_app(settings.dist_dir, serving_replicas=serving_replicas(topology), replica_header=REPLICA_HEADER)
    # Drains and exits 0 on SIGINT/SIGTERM; log_config=None: uvicorn's records go through the process's
    # handler (JSON, redacted), not uvicorn's own.
    DrainingServer(uvicorn.Config(app, host=args.host or endpoint.host,
                                  port=endpoint.port if args.port is None else args.port, access_log=False,
                                  log_config=None, log_level=server.log_level.lower(),
                                  timeout_graceful_shutdown=5)).run()
