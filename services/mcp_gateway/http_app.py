"""The HTTP face: `/mcp/ml` (the SDK's streamable HTTP behind the gate), the RFC 9728 document and `/healthz`."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from services.core.asgi import DrainingServer
from services.mcp_gateway.app import Gateway
from services.mcp_gateway.gate import AuthGate
from services.mcp_gateway.settings import metadata_url, origin_of, resource_path

HEALTH_PATH = "/healthz"


def protected_resource_metadata(gateway: Gateway) -> dict:
    """RFC 9728 §2: `resource` is the canonical URI exactly as configured (clients compare it byte for byte)."""
    return {
        "resource": gateway.canonical_uri,
        "authorization_servers": gateway.authorization_servers,
        "scopes_supported": sorted({t.scope for t in gateway.tools.tools}),
        "bearer_methods_supported": ["header"],
        "resource_name": "mlmesh ML MCP gateway",
    }


def allowed_hosts_and_origins(gateway: Gateway, bind_host: str, port: int) -> tuple[list[str], list[str]]:
    """The canonical URI's (and the public URL's) host and origin, the bound address, and any extras."""
    urls = [gateway.canonical_uri] + ([gateway.public_url] if gateway.public_url else [])
    hosts = {urlsplit(u).netloc for u in urls} | {f"{bind_host}:{port}", f"localhost:{port}"}
    origins = {origin_of(u) for u in urls} | {f"http://{bind_host}:{port}", f"http://localhost:{port}"}
    settings = gateway.settings
    # Lower-cased: the SDK compares Host/Origin as exact strings, and clients send host names in lower case.
    return (sorted({h.lower() for h in hosts | set(settings.allowed_hosts)}),
            sorted({o.lower() for o in origins | set(settings.allowed_origins)}))


def build_http_app(gateway: Gateway, *, bind_host: str = "127.0.0.1", port: int = 8765) -> ASGIApp:
    """The whole ASGI app; its lifespan runs the SDK's session manager."""
    document = protected_resource_metadata(gateway)
    hosts, origins = allowed_hosts_and_origins(gateway, bind_host, port)
    well_known = urlsplit(metadata_url(gateway.canonical_uri)).path

    async def metadata(request: Request) -> JSONResponse:
        # Public and cacheable: any client (a browser one too) must read it to learn how to authenticate.
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600",
                                               "Access-Control-Allow-Origin": "*"})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "tools": len(gateway.tools.tools)})

    # The SDK checks Host/Origin too (the same exact lists); auth is the gate's, not the SDK's AuthSettings.
    app = gateway.tools.lowlevel.streamable_http_app(
        streamable_http_path=resource_path(gateway.canonical_uri),
        max_request_body_size=gateway.settings.max_request_body_bytes,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                                     allowed_origins=origins),
        host=bind_host,
        custom_starlette_routes=[Route(well_known, metadata, methods=["GET"]),
                                 Route(HEALTH_PATH, health, methods=["GET"])],
    )
    return AuthGate(app, public_paths=(well_known, HEALTH_PATH), verifier=gateway.verifier,
                    tool=gateway.tools.spec, metadata_url=metadata_url(gateway.canonical_uri),
                    allowed_hosts=hosts, allowed_origins=origins,
                    max_body_bytes=gateway.settings.max_request_body_bytes, audit=gateway.tools.audit)


async def serve_http(gateway: Gateway, *, bind_host: str, port: int, sock: socket.socket | None = None,
                     log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains in-flight requests), then close the backends.
    `sock`: an already bound socket (tests bind port 0 first, so the canonical URI can name the port)."""
    if sock is not None:
        bind_host, port = sock.getsockname()[:2]
    app = build_http_app(gateway, bind_host=bind_host, port=port)
    # log_config=None: uvicorn's records go to the process's handler (JSON, redacted), not uvicorn's own.
    config = uvicorn.Config(app, host=bind_host, port=port, lifespan="on", access_log=False, log_config=None,
                            log_level=log_level.lower(), timeout_graceful_shutdown=10)
    server = DrainingServer(config)   # drains, then exits 0 (uvicorn alone would die of the signal)
    try:
        if gateway.metrics is not None:
            gateway.metrics.serve(port)   # the topology's metrics_port when `port` is the gateway's own
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        await gateway.close()
