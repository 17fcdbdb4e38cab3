"""The outermost MCP middleware of the gateway: who is calling, and which trace a tool call joins.

The SDK's own OpenTelemetryMiddleware (next in line) opens the SERVER span of every MCP request, a child
of the W3C `traceparent` in the request's `params._meta` when there is one. Over HTTP a client may send
the trace context as a `traceparent` header instead: when `_meta` carries none, this makes the header's
context current, so the SDK's span (and every backend call of the tool, which carries the current context
on) joins that trace. It also sets the verified caller as the call's principal, so log lines name it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

from services.core.auth.principal import reset_principal, set_principal
from services.core.observability.grpc_tracing import TRACEPARENT


class CallContext:
    def __init__(self, principal_key: str) -> None:
        self._principal_key = principal_key   # where the HTTP gate leaves the verified caller in the ASGI scope

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        request = ctx.request
        if request is None:   # stdio: no headers, and the caller is verified per tool call
            return await call_next(ctx)
        attached = None
        meta = ctx.meta
        if TRACEPARENT in request.headers and not (meta and meta.get(TRACEPARENT)):
            attached = otel_context.attach(propagate.extract(request.headers))
        principal = request.scope.get(self._principal_key)
        token = set_principal(principal) if principal is not None else None
        try:
            return await call_next(ctx)
        finally:
            if token is not None:
                reset_principal(token)
            if attached is not None:
                otel_context.detach(attached)
