"""Composition root of the puller: settings -> engine -> operations -> adapters -> pipeline -> gRPC host.

Operations live in the shared database (any service's Operations servicer can answer for them); the
artifacts go to the shared object store; the registry is reached through the topology. Nothing global.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from mlmesh.v1 import operations_pb2_grpc, puller_pb2_grpc
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.clients.registry import RegistryClient, lineage_sink
from services.core.db.migrate import open_database
from services.core.grpc.server import ServiceHost, configure_logging
from services.core.observability.tracing import setup_tracing
from services.core.lineage import LineageBus
from services.core.observability.metrics import ServiceMetrics
from services.core.observability.metrics_artifacts import register_cache
from services.core.observability.metrics_operations import OperationMetrics
from services.core.operations import OperationRunner, OperationsServicer, OperationStore
from services.core.settings import (
    ArtifactSettings, AuthSettings, MeshSettings, MLSettings, ObjectStoreSettings, ObservabilitySettings,
    PullerSettings, ServerSettings,
)
from services.core.topology import load_topology
from services.puller.adapters.huggingface import HuggingFaceAdapter
from services.puller.adapters.torchhub import TorchHubAdapter
from services.puller.credentials import CredentialResolver
from services.puller.formats.isolated import run_isolated
from services.puller.pipeline import PullPipeline
from services.puller.push import PushPipeline
from services.puller.servicer import PullerServicer

SERVICE = "puller"
log = logging.getLogger("mlmesh.puller")

_O = "/mlmesh.v1.Operations/"
METHOD_SCOPES = {
    "/mlmesh.v1.Puller/Pull": policy.PULLER_PULL,
    "/mlmesh.v1.Puller/Push": policy.PULLER_PUSH,
    **{_O + m: policy.OPERATIONS_READ for m in ("GetOperation", "ListOperations", "WatchOperation")},
    _O + "CancelOperation": policy.OPERATIONS_CANCEL,
}


@dataclass
class PullerApp:
    host: ServiceHost
    engine: AsyncEngine
    pipeline: PullPipeline
    runner: OperationRunner
    registry: RegistryClient

    async def start(self, bind_host: str, port: int) -> int:
        return await self.host.start(bind_host, port)

    async def stop(self, grace: float | None = None) -> None:
        await self.host.stop(grace)
        await self.runner.aclose()  # unfinished pulls are recorded ABORTED, like a restart would
        await self.registry.close()
        await self.engine.dispose()


async def build_puller(
    mesh: MeshSettings,
    server: ServerSettings,
    auth: AuthSettings,
    *,
    ml: MLSettings | None = None,
    puller: PullerSettings | None = None,
    artifacts: ArtifactSettings | None = None,
    object_store: ObjectStoreSettings | None = None,
    verifier: TokenVerifier | None = None,
    registry_address: str | None = None,
    credentials: CredentialResolver | None = None,
    cancel_poll_s: float = 0.25,
    observability: ObservabilitySettings | None = None,
) -> PullerApp:
    ml, puller = ml or MLSettings(), puller or PullerSettings()
    artifacts = artifacts or ArtifactSettings()
    topology = load_topology(mesh.topology_file)
    metrics = ServiceMetrics.build(SERVICE, observability, topology.services.get(SERVICE))
    engine = await open_database(mesh)
    operations = OperationStore(engine, SERVICE)
    await operations.recover_interrupted()
    runner = OperationRunner(operations, cancel_poll_s=cancel_poll_s, metrics=OperationMetrics(
        metrics.registry, {kind: lambda artifact: artifact.total_size for kind in ("pull", "push")}) if metrics else None)

    address = registry_address or topology.get("registry").address
    registry = RegistryClient.connect(address, TokenIssuer.from_settings(mesh, auth), subject=SERVICE)
    bus = LineageBus()
    bus.subscribe(lineage_sink(registry))  # every store/save/pull event is recorded by the registry

    cache = puller.cache_root(mesh)
    credentials = credentials or CredentialResolver(mesh.home / "credentials")
    limits = {"max_file_bytes": puller.max_file_bytes, "timeout_s": puller.download_timeout_s}
    hf = HuggingFaceAdapter(cache_dir=cache / "hf", credentials=credentials, endpoint=puller.hf_endpoint,
                            offline=ml.ml_hf_hub_offline, **limits)
    torchhub = TorchHubAdapter(cache_dir=cache / "torchhub", credentials=credentials,
                               allowlist_file=puller.torchhub_allowlist_file, mirror_url=puller.torchhub_mirror_url,
                               offline=ml.ml_torchhub_offline, **limits)
    # The Pull caller's puller.pull scope is what the handlers check: the puller stores on its behalf.
    kit = build_artifact_toolkit(mesh, bus, service=SERVICE, write_scope=policy.PULLER_PULL,
                                 read_scope=policy.PULLER_PULL, artifacts=artifacts, object_store=object_store, ml=ml)
    pipeline = PullPipeline(runner=runner, hf=hf, torchhub=torchhub, store=kit.store, saver=kit.saver,
                            signer=kit.signer, registry=registry, bus=bus, staging_root=cache / "staging",
                            service=SERVICE)
    # A push stores through the same handlers on behalf of a puller.push caller.
    push_kit = build_artifact_toolkit(mesh, bus, service=SERVICE, write_scope=policy.PULLER_PUSH,
                                      read_scope=policy.PULLER_PUSH, artifacts=artifacts, object_store=object_store,
                                      ml=ml)
    inspect = partial(run_isolated, timeout_s=puller.inspect_timeout_s, memory_bytes=puller.inspect_memory_bytes)
    push = PushPipeline(runner=runner, inspect=inspect, store=push_kit.store, signer=push_kit.signer,
                        registry=registry, bus=bus, staging_root=cache / "staging", max_bytes=puller.max_push_bytes,
                        service=SERVICE)
    if removed := push.discard_stale():
        log.info("removed %d staged upload(s) left by an interrupted puller", removed)

    if metrics is not None:
        register_cache(metrics.registry, kit.cache)
    host = ServiceHost(
        SERVICE, server, verifier or TokenVerifier.from_settings(mesh, auth, audience=SERVICE), METHOD_SCOPES,
        metrics=metrics,
    )
    puller_servicer, operations_servicer = PullerServicer(pipeline, push), OperationsServicer(operations)
    host.add(lambda s: puller_pb2_grpc.add_PullerServicer_to_server(puller_servicer, s), ["mlmesh.v1.Puller"])
    host.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(operations_servicer, s),
             ["mlmesh.v1.Operations"])
    return PullerApp(host=host, engine=engine, pipeline=pipeline, runner=runner, registry=registry)


async def serve(port: int | None = None) -> None:
    mesh, server, auth = MeshSettings(), ServerSettings(), AuthSettings()
    configure_logging(server.log_level, service=SERVICE)
    setup_tracing(SERVICE)  # before the host is built: its interceptor reads the process's tracer
    endpoint = load_topology(mesh.topology_file).get(SERVICE)
    app = await build_puller(mesh, server, auth)
    bound = await app.start(server.bind_host, endpoint.port if port is None else port)
    log.info("puller serving on %s:%d", server.bind_host, bound)
    try:
        await app.host.run_until_signal()
    finally:
        await app.runner.aclose()
        await app.registry.close()
        await app.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.puller", description="The mlmesh puller service")
    parser.add_argument("--port", type=int, default=None, help="override the topology's port (0 picks a free one)")
    asyncio.run(serve(parser.parse_args(argv).port))
