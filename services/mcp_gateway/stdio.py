"""The stdio transport (`mlmesh-ml-mcp --stdio`): the same tools, for a client that spawns the gateway.

Authentication: stdio has no HTTP request to carry a bearer token, so the agent's token comes in the
environment as MLMESH_MCP_TOKEN and is checked exactly like an HTTP one (audience = the canonical URI,
issuer, signature, expiry) before the server starts, and again on every call (so it expires on time);
its subject is audited and its scopes gate each tool. Without one the gateway refuses to start.
"""

from __future__ import annotations

import logging

from mcp.server.stdio import stdio_server

from services.core.errors import Unauthenticated
from services.mcp_gateway.app import Gateway

log = logging.getLogger("mlmesh.mcp.stdio")


def stdio_token(gateway: Gateway) -> str:
    """The verified MLMESH_MCP_TOKEN; Unauthenticated (with how to get one) when missing or refused."""
    token = gateway.settings.token.get_secret_value().strip()
    if not token:
        raise Unauthenticated(f"stdio needs MLMESH_MCP_TOKEN: a token for {gateway.canonical_uri}, e.g. "
                              f"`mlmesh token --aud {gateway.canonical_uri} --subject <agent> --scope ...`")
    try:
        principal = gateway.verifier.verify(token)
    except Unauthenticated as exc:
        raise Unauthenticated(f"MLMESH_MCP_TOKEN refused: {exc}") from None
    log.info("stdio: acting for %s with scopes %s", principal.subject, " ".join(sorted(principal.scopes)))
    return token


async def serve_stdio(gateway: Gateway, token: str) -> None:
    gateway.tools.stdio_token = token
    server = gateway.tools.lowlevel
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await gateway.close()
