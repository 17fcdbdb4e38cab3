"""Clients of the front door only: gRPC stubs on one channel to Envoy, REST through Envoy's transcoder, an MCP
client on Envoy's /mcp/ path, and the demo models the flow registers through Envoy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request

import grpc
import httpx2
import torch
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mlmesh.v1 import (compiler_pb2_grpc, operations_pb2, operations_pb2_grpc, puller_pb2_grpc, registry_pb2,
                       registry_pb2_grpc, serving_pb2_grpc)
from services.core.artifacts.messages import manifest_message
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.lineage import LineageBus
from services.core.settings import MeshSettings
from services.mesh.demo import data, models as demo
from services.mesh.demo.seed import save
from tests.e2e.conftest import Mesh

TERMINAL = {operations_pb2.OPERATION_STATE_SUCCEEDED, operations_pb2.OPERATION_STATE_FAILED,
            operations_pb2.OPERATION_STATE_CANCELLED}


class Front:
    """Every stub on one channel to Envoy; each call carries a token for the service its path reaches."""

    def __init__(self, mesh: Mesh, channel: grpc.aio.Channel) -> None:
        self.mesh = mesh
        self.registry = registry_pb2_grpc.RegistryStub(channel)
        self.operations = operations_pb2_grpc.OperationsStub(channel)   # answered by the registry behind Envoy
        self.puller = puller_pb2_grpc.PullerStub(channel)
        self.compiler = compiler_pb2_grpc.CompilerStub(channel)
        self.serving = serving_pb2_grpc.ServingStub(channel)

    def md(self, audience: str):
        return self.mesh.metadata(audience)

    async def finished(self, operation_id: str, timeout_s: float = 120) -> operations_pb2.Operation:
        """Follow WatchOperation to the end; the last update."""
        last = None
        async for update in self.operations.WatchOperation(
                operations_pb2.WatchOperationRequest(id=operation_id), metadata=self.md("registry"), timeout=timeout_s):
            last = update
            if update.state in TERMINAL:
                break
        assert last is not None and last.state in TERMINAL, last
        return last


async def rest(mesh: Mesh, method: str, path: str, body: dict | None, audience: str) -> tuple[int, dict]:
    """A REST call through Envoy's gRPC-JSON transcoder with a bearer token for `audience`."""
    request = urllib.request.Request(f"http://{mesh.envoy}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              "authorization": f"Bearer {mesh.token(audience)}"})

    def send() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    return await asyncio.to_thread(send)


@contextlib.asynccontextmanager
async def mcp_client(mesh: Mesh, scopes=ALL_SCOPES):
    """The MCP SDK's client over streamable HTTP to Envoy's /mcp/ml; the token's audience is the canonical URI."""
    token = mesh.issuer.mint("agent-e2e", mesh.canonical, scopes)
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=120) as http:
        async with Client(streamable_http_client(f"http://{mesh.envoy}/mcp/ml", http_client=http)) as client:
            yield client


def market_rows(n: int, seed: int, regime: int = 0) -> list[list[float]]:
    return data.market(n, torch.Generator().manual_seed(seed), regime=regime)[0].tolist()


def _train() -> list[demo.Trained]:
    """The models regime_aware_alpha names, trained briefly (seconds): the flow needs them to run, not to be good."""
    quiet = lambda n: None  # noqa: E731
    recipes = [lambda g: demo.regime_classifier(g, 30, quiet),
               *(lambda g, r=r: demo.alpha_model(r, g, 20, quiet) for r in data.REGIMES)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models crawl when OpenMP threads spin on 2 cores next to six services
    try:
        return [recipe(torch.Generator().manual_seed(31 + i)) for i, recipe in enumerate(recipes)]
    finally:
        torch.set_num_threads(threads)


async def register_demo_models(front: Front) -> dict[str, str]:
    """The demo models, trained briefly and registered as `register_models` does. Name -> artifact id."""
    return await register_models(front, await asyncio.to_thread(_train))


async def register_models(front: Front, models: list[demo.Trained]) -> dict[str, str]:
    """Weights saved signed into the mesh's object store (there is no upload RPC: every service writes the
    store itself, as the demo seed does), then registered @prod through Envoy. Name -> artifact id."""
    mesh = front.mesh
    kit = build_artifact_toolkit(MeshSettings(home=mesh.home), LineageBus(), service="e2e",
                                 write_scope=REGISTRY_WRITE, read_scope=REGISTRY_WRITE)
    token = set_principal(Principal("e2e-operator", frozenset(ALL_SCOPES), "registry", "t", time.time() + 600))
    try:
        ids = {}
        for trained in models:
            saved = await save(trained, kit)
            artifact = await front.registry.RegisterArtifact(registry_pb2.RegisterArtifactRequest(
                manifest=manifest_message(saved.manifest), name=trained.name, aliases=["prod"],
                signature=signature_message(kit.signer, saved.signature)), metadata=front.md("registry"), timeout=30)
            ids[trained.name] = artifact.id
        return ids
    finally:
        reset_principal(token)
