"""`mlmesh-ml-mcp` / `python -m services.mcp_gateway`: streamable HTTP by default, `--stdio` for stdio.

Logs go to stderr (on stdio, stdout carries the protocol). Exit 2 on bad settings or a refused token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import anyio
from pydantic import ValidationError

from services.core.errors import MLMeshError
from services.core.grpc.server import configure_logging
from services.core.observability.tracing import setup_tracing
from services.core.settings import MeshSettings, ServerSettings
from services.core.topology import load_topology
from services.mcp_gateway.app import build_gateway
from services.mcp_gateway.http_app import serve_http
from services.mcp_gateway.settings import SERVICE
from services.mcp_gateway.stdio import serve_stdio, stdio_token


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mlmesh-ml-mcp", description="The mlmesh MCP gateway (data.ml.* tools).")
    parser.add_argument("--stdio", action="store_true", help="serve MCP on stdin/stdout (needs MLMESH_MCP_TOKEN)")
    parser.add_argument("--host", default=None, help="HTTP: listen address (default: the topology's)")
    parser.add_argument("--port", type=int, default=None, help="HTTP: port (default: the topology's, 8765)")
    args = parser.parse_args(argv)
    server = ServerSettings()
    configure_logging(server.log_level, service=SERVICE)
    try:
        setup_tracing(SERVICE)   # before the gateway is built; spans of tool calls and their backend calls
        mesh = MeshSettings()
        endpoint = load_topology(mesh.topology_file).get(SERVICE)
        gateway = build_gateway(mesh=mesh, server=server)
        token = stdio_token(gateway) if args.stdio else ""
    except (ValidationError, MLMeshError) as exc:
        print(f"mlmesh-ml-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        if args.stdio:
            anyio.run(serve_stdio, gateway, token)
        else:
            asyncio.run(serve_http(gateway, bind_host=args.host or endpoint.host,
                                   port=endpoint.port if args.port is None else args.port,
                                   log_level=server.log_level))
    except MLMeshError as exc:  # e.g. the metrics port is taken: say which setting, not a traceback
        print(f"mlmesh-ml-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
