"""How the `mlmesh` command reaches services: addresses from the topology, operator tokens minted per audience.

The command talks to services only over gRPC; an answer with an error status comes back as the domain
error the service raised (field kept), so the command can print one line and pick an exit code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from functools import cached_property

import grpc

from mlmesh.v1 import registry_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.errors import Unavailable
from services.core.grpc.client import connect, raise_domain_error
from services.core.settings import AuthSettings, MeshSettings
from services.core.topology import ServiceEndpoint, Topology, load_topology

CALL_TIMEOUT_S = 30.0


class MeshClient:
    """Settings, topology and the local issuer, read once per command."""

    def __init__(self, mesh: MeshSettings | None = None, auth: AuthSettings | None = None,
                 subject: str = "operator") -> None:
        self.mesh = mesh or MeshSettings()
        self.auth = auth or AuthSettings()
        self.subject = subject

    @cached_property
    def topology(self) -> Topology:
        return load_topology(self.mesh.topology_file)

    @cached_property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer.from_settings(self.mesh, self.auth)

    def endpoint(self, service: str) -> ServiceEndpoint:
        return self.topology.get(service)

    def mint(self, audience: str | list[str], scopes: Iterable[str] = ALL_SCOPES, ttl_s: int | None = None,
             subject: str | None = None) -> str:
        return self.issuer.mint(subject or self.subject, audience, scopes, ttl_s=ttl_s)

    def replica_addresses(self, service: str) -> list[str]:
        """Each replica of `service` a command can ask: `replicas: N` listen on N consecutive ports. With
        `discovery: dns` the entry's own address only: the pods behind it are not reachable from outside
        the cluster (inside it, HaltAll reaches each one)."""
        return self.endpoint(service).replica_addresses

    @contextlib.asynccontextmanager
    async def channel(self, service: str, address: str | None = None) -> AsyncIterator[grpc.aio.Channel]:
        """A channel to `service` (or to its replica at `address`) whose calls carry a token with
        audience = the service's name."""
        endpoint = self.endpoint(service)
        if address is not None:
            host, _, port = address.rpartition(":")
            endpoint = endpoint.model_copy(update={"host": host, "port": int(port)})
        channel = connect(endpoint.address, service, self.issuer, self.subject, ALL_SCOPES)
        try:
            async with translate_errors(endpoint):
                yield channel
        finally:
            await channel.close()

    @contextlib.asynccontextmanager
    async def registry(self) -> AsyncIterator[registry_pb2_grpc.RegistryStub]:
        async with self.channel("registry") as channel:
            yield registry_pb2_grpc.RegistryStub(channel)


@contextlib.asynccontextmanager
async def translate_errors(endpoint: ServiceEndpoint) -> AsyncIterator[None]:
    """gRPC errors -> domain errors; an unreachable service gets a message that says what to do."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE and _is_connect_failure(exc):
            raise Unavailable(f"{endpoint.name} at {endpoint.address} is not reachable; is `mlmesh up` running?") \
                from exc
        raise_domain_error(exc)


def _is_connect_failure(exc: grpc.aio.AioRpcError) -> bool:
    details = (exc.details() or "").lower()
    return "failed to connect" in details or "connection refused" in details or "connect failed" in details
