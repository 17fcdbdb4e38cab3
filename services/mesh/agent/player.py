"""Plays an AgentSpec's plan through a real MCP client session, one tool call per step.

The same guard a model-driven runtime applies: before the first call the whole plan is checked (every
step's tool is one the spec lists, and every listed tool exists in the gateway's tools/list), and every
call goes through `call_tool`, which refuses a tool outside the list. Each step's arguments are rendered
from the plan inputs and earlier results just before its call; a step whose tool answers an error stops
the play (the transcript keeps what ran, and the error as the gateway worded it).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import grpc
from mcp.shared.exceptions import MCPError

from services.core.errors import MLMeshError, PermissionDenied
from services.mesh.agent import templates
from services.mesh.agent.spec import AgentSpec, PlanStep

ERROR_META_KEY = "mlmesh/error"   # where the gateway puts {code, message, argument} of a tool error
SCOPE_META_KEY = "mlmesh/scope"   # where tools/list says which scope a tool needs


class ToolRefused(PermissionDenied):
    """A call to a tool the agent's spec does not list (or the gateway does not offer)."""


class StepFailed(MLMeshError):
    """A tool answered an error. Its status is the gateway's when that is a gRPC one (so `mlmesh agent run`
    exits 2 for a bad argument, 3 for something not found), else FAILED_PRECONDITION (e.g. SKILL_FAILED)."""

    def __init__(self, step: str, tool: str, text: str, details: dict | None) -> None:
        super().__init__(f"step {step!r} ({tool}) failed: {text}")
        self.step, self.tool, self.text = step, tool, text
        self.error_code = (details or {}).get("code", "")
        self.argument = (details or {}).get("argument")
        self.code = getattr(grpc.StatusCode, self.error_code, grpc.StatusCode.FAILED_PRECONDITION)


class ToolClient(Protocol):
    """What the player needs of an MCP client (mcp.Client is one)."""

    async def list_tools(self, *, cursor: str | None = None) -> Any: ...

    async def call_tool(self, name: str, arguments: dict | None = None, *, progress_callback=None) -> Any: ...


class Reporter(Protocol):
    def started(self, step: PlanStep, arguments: dict) -> None: ...

    def progress(self, step: PlanStep, value: float, total: float | None, message: str | None) -> None: ...

    def finished(self, record: StepRecord) -> None: ...


class Silent:
    def started(self, step, arguments) -> None: ...

    def progress(self, step, value, total, message) -> None: ...

    def finished(self, record) -> None: ...


@dataclass
class StepRecord:
    id: str
    tool: str
    arguments: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str = ""
    duration_ms: float = 0.0
    progress: list[str] = field(default_factory=list)


@dataclass
class Transcript:
    agent: str
    inputs: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "ok": self.ok, "error": self.error, "inputs": self.inputs,
                "steps": [asdict(s) for s in self.steps]}


class Player:
    def __init__(self, spec: AgentSpec, client: ToolClient, reporter: Reporter | None = None) -> None:
        self.spec = spec
        self.client = client
        self.reporter = reporter or Silent()
        self._scopes: dict[str, str] = {}

    def preflight(self) -> None:
        """Refuse the whole plan, before any call, when a step names a tool the spec does not allow."""
        forbidden = self.spec.forbidden_steps()
        if forbidden:
            named = ", ".join(f"{s.id} ({s.tool})" for s in forbidden)
            raise ToolRefused(f"the plan calls tools {self.spec.name} may not use: {named}; it may use only "
                              f"the tools its spec lists", field=f"plan.{forbidden[0].id}.tool")

    async def offered_tools(self) -> dict[str, str]:
        """The gateway's tools/list: tool name -> the scope it says the tool needs ("" when it says none)."""
        offered, cursor = {}, None
        while True:
            page = await self.client.list_tools(cursor=cursor)
            offered |= {tool.name: (tool.meta or {}).get(SCOPE_META_KEY, "") for tool in page.tools}
            cursor = page.next_cursor
            if not cursor:
                return offered

    async def check_gateway(self) -> None:
        """Every tool the spec lists must be one the gateway offers: a typo must not wait for its step."""
        self._scopes = await self.offered_tools()
        missing = sorted(set(self.spec.tools) - set(self._scopes))
        if missing:
            raise ToolRefused(f"the gateway does not offer {', '.join(missing)} (see its tools/list)", field="tools")

    async def call_tool(self, step: PlanStep, arguments: dict[str, Any], record: StepRecord | None = None
                        ) -> dict[str, Any]:
        """The one way a tool is called: allowed by the spec, else refused without a call."""
        if not self.spec.allows(step.tool):
            raise ToolRefused(f"{step.tool} is not one of {self.spec.name}'s tools", field=f"plan.{step.id}.tool")

        async def progress(value: float, total: float | None, message: str | None) -> None:
            if record is not None:
                record.progress.append(message or f"{value:g}")
            self.reporter.progress(step, value, total, message)

        try:
            result = await self.client.call_tool(step.tool, arguments, progress_callback=progress)
        except MCPError as exc:   # refused at the protocol level (e.g. HTTP 403 for a missing scope)
            scope = self._scopes.get(step.tool)
            hint = f"; the gateway says {step.tool} needs scope {scope}" if scope else ""
            raise StepFailed(step.id, step.tool, f"the gateway refused the call ({exc}){hint}", None) from None
        text = "".join(getattr(c, "text", "") for c in result.content or [])
        if result.is_error:
            raise StepFailed(step.id, step.tool, text or "the tool reported an error",
                             (result.meta or {}).get(ERROR_META_KEY))
        if result.structured_content is not None:
            return result.structured_content
        try:   # a tool without an output schema: its text is the JSON
            return json.loads(text)
        except json.JSONDecodeError:
            return {"text": text}

    async def play(self, inputs: dict[str, Any] | None = None) -> Transcript:
        """Every step in order; raises the first refusal or failure, with the transcript so far attached
        as `.transcript`."""
        transcript = Transcript(self.spec.name, self.spec.plan_inputs(inputs or {}))
        self.preflight()
        await self.check_gateway()
        context: dict[str, Any] = {"inputs": transcript.inputs, "steps": {}}
        for step in self.spec.plan:
            record = StepRecord(step.id, step.tool, {})
            transcript.steps.append(record)
            start = time.perf_counter()
            try:
                record.arguments = templates.render(step.arguments, f"plan.{step.id}.arguments", context)
                self.reporter.started(step, record.arguments)
                record.result = context["steps"][step.id] = await self.call_tool(step, record.arguments, record)
            except Exception as exc:
                record.error = transcript.error = str(exc) or type(exc).__name__
                exc.transcript = transcript  # type: ignore[attr-defined]
                raise
            finally:
                record.duration_ms = round((time.perf_counter() - start) * 1000.0, 1)
                self.reporter.finished(record)
        return transcript
