"""Composition root of the gateway: settings -> issuer, verifier, backends, audit -> the tool server.
Transports (http_app.py, stdio.py) take a built `Gateway`; nothing here is global."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.core.auth.tokens import TokenIssuer
from services.core.errors import InvalidArgument
from services.core.observability.metrics import ServiceMetrics
from services.core.settings import AuthSettings, MeshSettings, MLSettings, ObservabilitySettings, ServerSettings
from services.core.topology import load_topology
from services.mcp_gateway.audit import AuditTrail
from services.mcp_gateway.auth import AgentTokenVerifier
from services.mcp_gateway.backends import Backends
from services.mcp_gateway.metrics import ToolMetrics
from services.mcp_gateway.server import ToolServer
from services.mcp_gateway.settings import SERVICE, GatewaySettings
from services.mcp_gateway.tools import all_tools

BACKENDS = ("registry", "puller", "compiler", "serving")


@dataclass
class Gateway:
    settings: GatewaySettings
    canonical_uri: str            # tokens' `aud` must equal it; the RFC 9728 `resource`
    public_url: str               # where clients reach it, when that differs (e.g. through Envoy)
    authorization_servers: list[str]
    verifier: AgentTokenVerifier
    tools: ToolServer
    metrics: ServiceMetrics | None = None   # served by the HTTP transport (serve_http), not on stdio

    async def close(self) -> None:
        await self.tools.backends.close()
        self.tools.audit.close()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)


def check_canonical_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidArgument("must be an absolute http(s) URI without query or fragment",
                              field="mcp_ml_canonical_uri")
    return uri


def build_gateway(
    *,
    mesh: MeshSettings | None = None,
    auth: AuthSettings | None = None,
    ml: MLSettings | None = None,
    settings: GatewaySettings | None = None,
    server: ServerSettings | None = None,
    addresses: Mapping[str, str] | None = None,
    observability: ObservabilitySettings | None = None,
) -> Gateway:
    """`addresses` overrides the topology's (tests run the services on 127.0.0.1:0)."""
    mesh, auth, ml = mesh or MeshSettings(), auth or AuthSettings(), ml or MLSettings()
    settings, server = settings or GatewaySettings(), server or ServerSettings()
    canonical = check_canonical_uri(ml.mcp_ml_canonical_uri)
    mesh.ensure_home()
    issuer = TokenIssuer.from_settings(mesh, auth)   # the gateway mints its own backend tokens
    topology = load_topology(mesh.topology_file)
    resolved = {name: topology.get(name).address for name in BACKENDS if name in topology.services}
    resolved.update(addresses or {})
    verifier = AgentTokenVerifier(
        canonical, settings.token_issuer or auth.issuer,
        public_key=None if settings.jwks_url else issuer.public_key(), jwks_url=settings.jwks_url,
        leeway_s=auth.clock_skew_s)
    audit = AuditTrail(settings.audit_file or mesh.home / "logs" / "mcp_audit.jsonl")
    backends = Backends(issuer, resolved, max_message_bytes=server.max_message_bytes)
    tools = ToolServer(all_tools(), settings, backends, verifier, audit)
    metrics = ServiceMetrics.build(SERVICE, observability, topology.services.get(SERVICE))
    if metrics is not None:
        audit.on_record = ToolMetrics(metrics.registry, tools.tools).observe
    return Gateway(settings=settings, canonical_uri=canonical, public_url=ml.mcp_ml_url,
                   authorization_servers=list(settings.authorization_servers) or [auth.issuer],
                   verifier=verifier, tools=tools, metrics=metrics)
