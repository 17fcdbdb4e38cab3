"""The HTTP gate in front of the SDK's streamable HTTP endpoint: Host/Origin, bearer token, tool scope.

Default deny: every path but the public ones (health, RFC 9728 metadata) needs a valid token. Order:
  1. Host and Origin must be listed (DNS rebinding): 421 / 403, before anything else is looked at;
  2. the bearer token must verify for the canonical URI: else 401 with `WWW-Authenticate: Bearer
     resource_metadata="..."` (RFC 9728 §5.1) and the reason;
  3. a tools/call must name a tool whose scope the token carries: else 403 `insufficient_scope` with
     the scope needed (the tool handler checks again, so the scope holds even if this parse differed).
Nothing refused here reaches the MCP server, let alone a backend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.auth.principal import Principal
from services.core.errors import Unauthenticated
from services.mcp_gateway.audit import AuditTrail, argument_hash
from services.mcp_gateway.auth import AgentTokenVerifier, access_token
from services.mcp_gateway.catalog import ToolSpec
from services.mcp_gateway.server import PRINCIPAL_KEY

log = logging.getLogger("mlmesh.mcp.gate")


class _Refused(Exception):
    def __init__(self, status: int, body: dict, challenge: str | None = None) -> None:
        self.status, self.body, self.challenge = status, body, challenge


class AuthGate:
    def __init__(self, app: ASGIApp, *, public_paths: Iterable[str], verifier: AgentTokenVerifier,
                 tool: Callable[[str], ToolSpec | None], metadata_url: str, allowed_hosts: Iterable[str],
                 allowed_origins: Iterable[str], max_body_bytes: int, audit: AuditTrail) -> None:
        self.app = app
        self._public = frozenset(public_paths)
        self._verifier = verifier
        self._tool = tool
        self._metadata_url = metadata_url
        self._hosts = frozenset(h.lower() for h in allowed_hosts)      # host names are case-insensitive
        self._origins = frozenset(o.lower() for o in allowed_origins)
        self._max_body = max_body_bytes
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
            return await self.app(scope, receive, send)
        try:
            headers = Headers(scope=scope)
            self._check_host_and_origin(headers)
            token, principal = self._authenticate(headers)
            if scope["method"] == "POST":
                body = await _read_body(receive, self._max_body)
                self._authorize(body, principal)
                receive = _replay(body, receive)
        except _Refused as refused:
            return await _respond(send, refused)
        scope["user"] = AuthenticatedUser(access_token(token, principal))   # SDK: binds sessions to the caller
        scope["auth"] = AuthCredentials(sorted(principal.scopes))
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    def _check_host_and_origin(self, headers: Headers) -> None:
        host, origin = headers.get("host"), headers.get("origin")
        if host is None or host.lower() not in self._hosts:
            log.warning("refused Host %r", host)
            raise _Refused(421, {"error": "invalid_request", "error_description": "Host not allowed"})
        if origin is not None and origin.lower() not in self._origins:   # absent: not a browser, nothing to rebind
            log.warning("refused Origin %r", origin)
            raise _Refused(403, {"error": "invalid_request", "error_description": "Origin not allowed"})

    def _authenticate(self, headers: Headers) -> tuple[str, Principal]:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            # RFC 6750 §3.1: a request without credentials gets the challenge but no error code.
            raise _Refused(401, {"error": "invalid_request", "error_description": "bearer token required"},
                           f'Bearer resource_metadata="{self._metadata_url}"')
        try:
            return token, self._verifier.verify(token)
        except Unauthenticated as exc:
            reason = _quoted(str(exc))
            raise _Refused(401, {"error": "invalid_token", "error_description": str(exc)},
                           f'Bearer resource_metadata="{self._metadata_url}", error="invalid_token", '
                           f'error_description="{reason}"') from None

    def _authorize(self, body: bytes, principal: Principal) -> None:
        for name, arguments in _tool_calls(body):
            spec = self._tool(name)
            if spec is None or spec.scope in principal.scopes:
                continue   # unknown tools are the MCP server's to refuse
            self._audit.record(subject=principal.subject, tool=spec.name, called_as=name,
                               args_sha256=argument_hash(arguments), outcome="PERMISSION_DENIED", latency_ms=0.0,
                               request_id="-", transport="http")
            text = f"{spec.name} needs scope {spec.scope}"
            raise _Refused(403, {"error": "insufficient_scope", "error_description": text, "scope": spec.scope},
                           f'Bearer error="insufficient_scope", scope="{spec.scope}", '
                           f'resource_metadata="{self._metadata_url}", error_description="{text}"')


def _tool_calls(body: bytes) -> list[tuple[str, object]]:
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []   # not JSON: the MCP server answers the parse error and runs nothing
    calls = []
    for m in message if isinstance(message, list) else [message]:
        if isinstance(m, dict) and m.get("method") == "tools/call" and isinstance(m.get("params"), dict):
            name = m["params"].get("name")
            if isinstance(name, str):
                calls.append((name, m["params"].get("arguments")))
    return calls


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise _Refused(413, {"error": "invalid_request", "error_description": f"body over {limit} bytes"})
        if not message.get("more_body", False):
            break
    return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()   # after the body: the disconnect, when it comes

    return replay


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


async def _respond(send: Send, refused: _Refused) -> None:
    body = json.dumps(refused.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if refused.challenge:
        headers.append((b"www-authenticate", refused.challenge.encode()))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
