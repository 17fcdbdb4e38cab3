"""The MCP server the transports share: tools/list and tools/call over the tool specs.

Built on the SDK's low-level `Server`, so each tool's input and output schemas, annotations, both name
spellings and the error shape are exactly what this module says. Every call: resolve the tool, check
the caller's scope (again: the HTTP gate checked it first; stdio has no gate), validate the arguments,
run the handler, audit.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from services.core.auth.principal import Principal
from services.core.errors import Unauthenticated
from services.core.grpc.interceptor import new_request_id, request_id_bound
from services.mcp_gateway.audit import AuditTrail, argument_hash
from services.mcp_gateway.auth import AgentTokenVerifier
from services.mcp_gateway.backends import Backends
from services.mcp_gateway.call_context import CallContext
from services.mcp_gateway.catalog import ToolCall, ToolSpec
from services.mcp_gateway.errors import ToolFailure, from_validation
from services.mcp_gateway.settings import SERVICE, GatewaySettings

log = logging.getLogger("mlmesh.mcp")
PRINCIPAL_KEY = "mlmesh.principal"   # where the HTTP gate leaves the verified caller in the ASGI scope
ERROR_META_KEY = "mlmesh/error"


def listed_tools(tools: list[ToolSpec], underscore_names: bool) -> list[types.Tool]:
    listed = []
    for spec in tools:
        names = (spec.name, spec.alias) if underscore_names else (spec.name,)
        for name in names:
            listed.append(types.Tool(
                name=name, title=spec.title, description=f"{spec.description} Needs scope {spec.scope}.",
                input_schema=spec.args.model_json_schema(), output_schema=spec.result.model_json_schema(),
                annotations=spec.annotations, _meta={"mlmesh/scope": spec.scope}))
    return listed


class ToolServer:
    def __init__(self, tools: list[ToolSpec], settings: GatewaySettings, backends: Backends,
                 verifier: AgentTokenVerifier, audit: AuditTrail) -> None:
        self.tools = tools
        self._by_name = {t.name: t for t in tools} | {t.alias: t for t in tools}
        self._listed = listed_tools(tools, settings.underscore_names)
        self._schemas = {name: spec.args.model_json_schema() for name, spec in self._by_name.items()}
        self._settings = settings
        self.backends = backends
        self._verifier = verifier
        self.audit = audit
        self.stdio_token: str | None = None   # stdio only: the agent's token (MLMESH_MCP_TOKEN)
        self.lowlevel = Server(SERVICE, version="0.1.0", instructions=(
            "mlmesh MLOps: data.ml.* tools pull, compile, serve and query models, run hash-locked skills, "
            "and halt serving. Long tools report progress; errors name the argument at fault."),
            on_list_tools=self.list_tools, on_call_tool=self.call_tool, get_tool_input_schema=self.input_schema)
        # Outermost: the caller and the HTTP traceparent, before the SDK's span middleware opens the span.
        self.lowlevel.middleware.insert(0, CallContext(PRINCIPAL_KEY))

    def spec(self, name: str) -> ToolSpec | None:
        return self._by_name.get(name)

    def input_schema(self, name: str) -> dict | None:
        """For the SDK's Mcp-Param header check on 2026-07-28 calls: without it the SDK runs the whole
        tools/list handler and serialises every schema on every call (~2 ms each)."""
        return self._schemas.get(name)

    async def list_tools(self, ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._listed)

    async def call_tool(self, ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = self._by_name.get(params.name)
        if spec is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        rid = new_request_id()
        with request_id_bound(rid):  # the call's log lines name its request id, as the backends' access logs do
            return await self._run_tool(ctx, params, spec, rid)

    async def _run_tool(self, ctx, params: types.CallToolRequestParams, spec, rid: str) -> types.CallToolResult:
        arguments = params.arguments or {}
        start, subject, outcome = time.perf_counter(), "-", "INTERNAL"
        try:
            principal = self._principal(ctx)
            subject = principal.subject
            if spec.scope not in principal.scopes:
                raise ToolFailure("PERMISSION_DENIED", f"{spec.name} needs scope {spec.scope}")
            try:
                args = spec.args.model_validate(arguments)
            except ValidationError as exc:
                raise from_validation(exc, list(spec.args.model_fields)) from None
            call = ToolCall(spec=spec, agent=principal.subject, request_id=rid, backends=self.backends,
                            settings=self._settings, progress=ctx.session.report_progress)
            result = await spec.run(call, args)
            outcome = "ok"
            return types.CallToolResult(content=[types.TextContent(type="text", text=_json(result))],
                                        structured_content=result)
        except ToolFailure as failure:
            outcome = failure.code
            return _error(failure)
        except anyio.get_cancelled_exc_class():
            outcome = "CANCELLED"
            raise
        except Exception:
            log.exception("tool %s failed (request id %s)", spec.name, rid)
            return _error(ToolFailure("INTERNAL", f"internal error in the gateway (request id {rid})"))
        finally:
            self.audit.record(subject=subject, tool=spec.name, called_as=params.name, args_sha256=argument_hash(
                arguments), outcome=outcome, latency_ms=round((time.perf_counter() - start) * 1000.0, 3),
                request_id=rid, transport="http" if ctx.request is not None else "stdio")

    def _principal(self, ctx) -> Principal:
        if ctx.request is not None:
            principal = ctx.request.scope.get(PRINCIPAL_KEY)
            if principal is None:  # only the gate puts one there; an ungated HTTP app serves nobody
                raise ToolFailure("UNAUTHENTICATED", "no verified bearer token")
            return principal
        if not self.stdio_token:
            raise ToolFailure("UNAUTHENTICATED", "no agent token (stdio needs MLMESH_MCP_TOKEN)")
        try:
            return self._verifier.verify(self.stdio_token)   # every call: an expired token stops working
        except Unauthenticated as exc:
            raise ToolFailure("UNAUTHENTICATED", f"MLMESH_MCP_TOKEN refused: {exc}") from None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _error(failure: ToolFailure) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=failure.text())], is_error=True,
                                _meta={ERROR_META_KEY: failure.details()})
