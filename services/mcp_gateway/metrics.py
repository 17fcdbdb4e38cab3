"""The gateway's tool-call series, fed by the audit trail: every tool call is audited exactly once (by the
tool server, or by the HTTP gate when it refuses the call's scope), so counting audit records counts calls."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.mcp_gateway.audit import AuditRecord
from services.mcp_gateway.catalog import ToolSpec

# From a registry read (ms) to a pull or compile the tool follows to its end (minutes).
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0, 3600.0)


class ToolMetrics:
    def __init__(self, registry: CollectorRegistry, tools: Iterable[ToolSpec]) -> None:
        self._scopes = {spec.name: spec.scope for spec in tools}
        self.calls = Counter("mlmesh_mcp_tool_calls", "MCP tool calls by tool, outcome (ok, or the failure's "
                             "status name) and the scope the tool needs of the calling principal.",
                             ["tool", "outcome", "scope"], registry=registry)
        self.duration = Histogram("mlmesh_mcp_tool_call_duration_seconds", "Time a tool call took, by tool.",
                                  ["tool"], buckets=TOOL_BUCKETS, registry=registry)

    def observe(self, record: AuditRecord) -> None:
        tool = record.tool if record.tool in self._scopes else "unknown"
        self.calls.labels(tool, record.outcome, self._scopes.get(tool, "")).inc()
        self.duration.labels(tool).observe(record.latency_ms / 1000.0)
