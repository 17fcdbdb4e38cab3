"""How the agent reaches the gateway: an MCP client session over streamable HTTP (the gateway's URL, a
bearer token) or over stdio (the gateway spawned as `python -m services.mcp_gateway --stdio`, the token
in MLMESH_MCP_TOKEN). Either way the token's audience is the gateway's canonical URI, exactly.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from services.core.settings import MLSettings
from services.core.topology import mcp_ml_url
from services.mesh.client import MeshClient

STDIO = "stdio"


@dataclass(frozen=True)
class Endpoint:
    """Where the agent connects (a URL, or "stdio") and the token it presents."""

    target: str
    token: str
    canonical_uri: str


def agent_endpoint(client: MeshClient, subject: str, scopes: Iterable[str], *, stdio: bool = False,
                   url: str | None = None, token: str | None = None, ml: MLSettings | None = None) -> Endpoint:
    """The gateway's URL (given, `mcp_ml_url`, or the topology's) and a token: given, MLMESH_MCP_TOKEN, or
    minted by the local issuer for `subject` with just `scopes` (the agent gets no more than its spec says)."""
    ml = ml or MLSettings()
    token = token or os.environ.get("MLMESH_MCP_TOKEN") or client.issuer.mint(
        subject, ml.mcp_ml_canonical_uri, sorted(set(scopes)))
    target = STDIO if stdio else (url or mcp_ml_url(ml.mcp_ml_url, client.topology))
    return Endpoint(target=target, token=token, canonical_uri=ml.mcp_ml_canonical_uri)


@contextlib.asynccontextmanager
async def http_session(url: str, token: str, *, read_timeout_s: float = 600.0) -> AsyncIterator[Client]:
    # A long tool (a first skill run deploys its models) may stay quiet between progress events for a while.
    timeout = httpx2.Timeout(30.0, read=read_timeout_s)
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=timeout) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def stdio_parameters(token: str, environ: Mapping[str, str] | None = None) -> StdioServerParameters:
    """The gateway as a child process: this environment (MLMESH_HOME, the topology, the canonical URI), the
    token, and quiet logs unless asked (they go to stderr; stdout carries the protocol)."""
    env = dict(os.environ if environ is None else environ)
    env["MLMESH_MCP_TOKEN"] = token
    env.setdefault("MLMESH_LOG_LEVEL", "WARNING")
    return StdioServerParameters(command=sys.executable, args=["-m", "services.mcp_gateway", "--stdio"], env=env)


@contextlib.asynccontextmanager
async def session(endpoint: Endpoint, environ: Mapping[str, str] | None = None) -> AsyncIterator[Client]:
    if endpoint.target == STDIO:
        async with Client(stdio_parameters(endpoint.token, environ)) as client:
            yield client
    else:
        async with http_session(endpoint.target, endpoint.token) as client:
            yield client
