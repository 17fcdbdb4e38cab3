"""`RegistryClient`: a typed async client of the Registry, with a mesh token for audience "registry".

Every call re-raises what the registry answered as the domain error it started as (field kept), so a
service calling the registry fails with the registry's own status, not a generic UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc

from mlmesh.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from services.core.artifacts.manifest import Manifest
from services.core.artifacts.messages import manifest_message
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer
from services.core.grpc.client import connect, raise_domain_error
from services.core.lineage import LineageEvent, LineageSink

AUDIENCE = "registry"
DEFAULT_SCOPES = (policy.REGISTRY_READ, policy.REGISTRY_WRITE, policy.LINEAGE_WRITE)
T = TypeVar("T")


def event_message(event: LineageEvent) -> registry_pb2.LineageEvent:
    message = registry_pb2.LineageEvent(
        id=event.id, operation=event.operation, actor=event.actor, inputs=list(event.inputs),
        outputs=list(event.outputs), operation_id=event.operation_id, service=event.service,
    )
    message.parameters.update(dict(event.parameters))
    message.time.FromDatetime(event.time)
    return message


class RegistryClient:
    """Calls the Registry over `channel` (made by `connect`, so each call carries a mesh token)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 30.0) -> None:
        self._channel = channel
        self._stub = registry_pb2_grpc.RegistryStub(channel)
        self._timeout_s = timeout_s

    @classmethod
    def connect(
        cls,
        address: str,
        issuer: TokenIssuer,
        *,
        subject: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        timeout_s: float = 30.0,
    ) -> "RegistryClient":
        """A client with its own channel; call inside the running loop, `close()` when done."""
        return cls(connect(address, AUDIENCE, issuer, subject, scopes), timeout_s=timeout_s)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_domain_error(exc)

    async def register_artifact(
        self,
        manifest: Manifest | Mapping[str, Any] | common_pb2.Manifest,
        *,
        name: str = "",
        aliases: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        source_uri: str = "",
        signature: common_pb2.Signature | None = None,
    ) -> common_pb2.Artifact:
        request = registry_pb2.RegisterArtifactRequest(
            manifest=manifest_message(manifest), name=name, aliases=list(aliases), labels=dict(labels or {}),
            source_uri=source_uri, signature=signature,
        )
        return await self._call(self._stub.RegisterArtifact, request)

    async def register_compiled_artifact(self, compiled: common_pb2.CompiledArtifact) -> common_pb2.CompiledArtifact:
        request = registry_pb2.RegisterCompiledArtifactRequest(compiled=compiled)
        return await self._call(self._stub.RegisterCompiledArtifact, request)

    async def get_artifact(self, ref: str) -> common_pb2.Artifact:
        """By "sha256:<hex>", "name@alias" or "name" (= name@latest)."""
        return await self._call(self._stub.GetArtifact, registry_pb2.GetArtifactRequest(ref=ref))

    async def resolve(self, ref: str) -> str:
        """The artifact id ("sha256:<hex>") that `ref` points at now."""
        return (await self.get_artifact(ref)).id

    async def get_compiled_artifact(self, compiled_id: str) -> common_pb2.CompiledArtifact:
        """A compiler's output by "sha256:<hex>" (a "compiled:" prefix is accepted too)."""
        request = registry_pb2.GetCompiledArtifactRequest(id=compiled_id)
        return await self._call(self._stub.GetCompiledArtifact, request)

    async def publish_skill(self, spec_yaml: str, *, expected_version: str = "") -> registry_pb2.PublishSkillResponse:
        request = registry_pb2.PublishSkillRequest(spec_yaml=spec_yaml, expected_version=expected_version)
        return await self._call(self._stub.PublishSkill, request)

    async def record_lineage(self, event: LineageEvent) -> registry_pb2.LineageEvent:
        request = registry_pb2.RecordLineageRequest(event=event_message(event))
        return await self._call(self._stub.RecordLineage, request)

    async def get_lineage(self, entity: str, *, depth: int = 0) -> registry_pb2.LineageGraph:
        return await self._call(self._stub.GetLineage, registry_pb2.GetLineageRequest(entity=entity, depth=depth))


def lineage_sink(client: RegistryClient) -> LineageSink:
    """A LineageBus sink that records each event in the registry (`bus.subscribe(lineage_sink(c))`)."""

    async def sink(event: LineageEvent) -> None:
        await client.record_lineage(event)

    return sink
