"""What a tool is (`ToolSpec`: name, scope, schemas, annotations, handler) and what a handler gets
(`ToolCall`: the agent, the backends, progress). The tool modules declare specs; `server.py` serves them.

Agent scopes reuse the mesh vocabulary (`serving.infer`, `puller.pull`, ...), so `mlmesh token --aud
<canonical URI> --scope serving.infer` mints a token this gateway accepts; they are granted for the MCP
resource only, since a token's audience is the canonical URI and backends refuse it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict

from services.mcp_gateway.backends import Backends
from services.mcp_gateway.errors import from_rpc
from services.mcp_gateway.settings import GatewaySettings

PREFIX = "data.ml."

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)


def writes(*, destructive: bool, idempotent: bool, open_world: bool = False) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent,
                           open_world_hint=open_world)


class Args(BaseModel):
    """Tool arguments: unknown ones are refused by name rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


Progress = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class ToolSpec:
    name: str                                   # "data.ml.predict"; also callable as "data_ml_predict"
    title: str
    description: str
    scope: str                                  # what the agent's token must carry
    service: str                                # the backend it calls (its token audience)
    backend_scopes: tuple[str, ...]             # what the gateway's own token for that call carries
    args: type[Args]
    result: type[Result]
    annotations: ToolAnnotations
    run: Callable[["ToolCall", Any], Awaitable[Result]]
    renames: Mapping[str, str] = field(default_factory=dict)   # backend field -> tool argument

    @property
    def alias(self) -> str:
        return self.name.replace(".", "_")


@dataclass
class ToolCall:
    """One tool call as a handler sees it."""

    spec: ToolSpec
    agent: str                                  # the agent's subject: recorded as `obo`, never its token
    request_id: str
    backends: Backends
    settings: GatewaySettings
    progress: Progress

    def stub(self, stub_class: type, service: str | None = None):
        return self.backends.stub(service or self.spec.service, stub_class)

    def metadata(self, service: str | None = None) -> tuple:
        return self.backends.metadata(service or self.spec.service, self.spec.backend_scopes, self.agent,
                                      self.request_id)

    async def unary(self, method: Callable, request: Any, service: str | None = None) -> Any:
        """One unary backend call with the gateway's token and deadline; errors become ToolFailure."""
        service = service or self.spec.service
        try:
            return await method(request, metadata=self.metadata(service), timeout=self.settings.call_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self.failure(exc, service) from None

    def failure(self, exc: grpc.aio.AioRpcError, service: str | None = None):
        service = service or self.spec.service
        return from_rpc(exc, service, self.backends.addresses.get(service, "?"), self.spec.renames)
