"""What the compiler needs from the registry: resolve an artifact, register a compiled artifact, and a
lineage sink. Over gRPC this wraps the shared RegistryClient."""

from __future__ import annotations

from typing import Protocol

import grpc

from mlmesh.v1 import common_pb2
from services.core.clients.registry import RegistryClient, lineage_sink
from services.core.errors import InvalidArgument, NotFound
from services.core.lineage import LineageSink


class RegistryPort(Protocol):
    async def get_artifact(self, ref: str) -> common_pb2.Artifact: ...

    async def register_compiled(self, compiled: common_pb2.CompiledArtifact) -> common_pb2.CompiledArtifact: ...


async def resolve_artifact(registry: RegistryPort, ref: str) -> common_pb2.Artifact:
    """The artifact `ref` names, with the fault reported against the request's `artifact` field."""
    if not ref:
        raise InvalidArgument("is required: 'sha256:<hex>', 'name@alias' or 'name'", field="artifact")
    try:
        return await registry.get_artifact(ref)
    except NotFound as exc:
        raise NotFound(exc.message, field="artifact") from None
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, field="artifact") from None


class GrpcRegistry:
    """The registry over one mesh channel (made by services.core.grpc.client.connect)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 30.0) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        self.client = RegistryClient(channel, timeout_s=timeout_s)

    async def get_artifact(self, ref: str) -> common_pb2.Artifact:
        return await self.client.get_artifact(ref)

    async def register_compiled(self, compiled: common_pb2.CompiledArtifact) -> common_pb2.CompiledArtifact:
        return await self.client.register_compiled_artifact(compiled)

    def lineage_sink(self) -> LineageSink:
        return lineage_sink(self.client)

    async def close(self) -> None:
        await self._channel.close()
