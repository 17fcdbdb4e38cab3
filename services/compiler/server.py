"""Composition root of the compiler: settings -> engine -> operations -> registry, store, loader ->
compilers -> ProductionizeHandler -> pipeline -> gRPC host. Nothing global.

Operations live in the shared database (any service's Operations servicer answers for them); compiled
files go to the shared object store; the registry, reached through the topology, records them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from mlmesh.v1 import compiler_pb2_grpc, operations_pb2_grpc
from services.compiler.compilers.registry import CompilerCatalog
from services.compiler.lane import CompileLane
from services.compiler.pipeline import CompilePipeline
from services.compiler.productionize import ProductionizeHandler
from services.compiler.registrar import GrpcRegistry
from services.compiler.servicer import CompilerServicer
from services.compiler.settings import CompilerSettings
from services.core.artifacts.load import LoadHandler
from services.core.artifacts.objectstore import ObjectStore
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.clients.registry import AUDIENCE as REGISTRY_AUDIENCE, DEFAULT_SCOPES as REGISTRY_SCOPES
from services.core.db.migrate import open_database
from services.core.grpc.client import connect
from services.core.grpc.server import ServiceHost, configure_logging
from services.core.observability.tracing import setup_tracing
from services.core.lineage import LineageBus
from services.core.observability.metrics import ServiceMetrics
from services.core.observability.metrics_operations import OperationMetrics
from services.core.operations import OperationRunner, OperationsServicer, OperationStore
from services.core.settings import (
    ArtifactSettings, AuthSettings, MeshSettings, ObjectStoreSettings, ObservabilitySettings, ServerSettings,
)
from services.core.topology import load_topology

SERVICE = "compiler"
log = logging.getLogger("mlmesh.compiler")

_C = "/mlmesh.v1.Compiler/"
_O = "/mlmesh.v1.Operations/"
METHOD_SCOPES = {
    _C + "Compile": policy.COMPILER_COMPILE,
    # What compiles here, with tool versions and GPU presence: for callers that may compile.
    _C + "ListCompilers": policy.COMPILER_COMPILE,
    **{_O + m: policy.OPERATIONS_READ for m in ("GetOperation", "ListOperations", "WatchOperation")},
    _O + "CancelOperation": policy.OPERATIONS_CANCEL,
}


@dataclass
class CompilerApp:
    host: ServiceHost
    engine: AsyncEngine
    pipeline: CompilePipeline
    runner: OperationRunner
    registry: GrpcRegistry
    lane: CompileLane
    catalog: CompilerCatalog

    async def start(self, bind_host: str, port: int) -> int:
        return await self.host.start(bind_host, port)

    async def stop(self, grace: float | None = None) -> None:
        await self.host.stop(grace)
        await self.close()

    async def close(self) -> None:
        await self.runner.aclose()  # unfinished compiles are recorded ABORTED, like a restart would
        self.lane.close()
        await self.registry.close()
        await self.engine.dispose()


async def build_compiler(
    mesh: MeshSettings,
    server: ServerSettings,
    auth: AuthSettings,
    *,
    compiler: CompilerSettings | None = None,
    artifacts: ArtifactSettings | None = None,
    object_store: ObjectStoreSettings | None = None,
    verifier: TokenVerifier | None = None,
    registry_address: str | None = None,
    cancel_poll_s: float = 0.25,
    observability: ObservabilitySettings | None = None,
) -> CompilerApp:
    compiler, artifacts = compiler or CompilerSettings(), artifacts or ArtifactSettings()
    topology = load_topology(mesh.topology_file)
    metrics = ServiceMetrics.build(SERVICE, observability, topology.services.get(SERVICE))
    engine = await open_database(mesh)
    operations = OperationStore(engine, SERVICE)
    await operations.recover_interrupted()
    runner = OperationRunner(operations, cancel_poll_s=cancel_poll_s, metrics=OperationMetrics(
        metrics.registry, {"compile": lambda compiled: compiled.size}) if metrics else None)

    address = registry_address or topology.get("registry").address
    issuer = TokenIssuer.from_settings(mesh, auth)
    registry = GrpcRegistry(connect(address, REGISTRY_AUDIENCE, issuer, SERVICE, REGISTRY_SCOPES))
    bus = LineageBus()
    bus.subscribe(registry.lineage_sink())  # load/store/compile events are recorded by the registry

    # The Compile caller's compiler.compile scope is what the handlers check: the compiler acts for it.
    store = StoreHandler(ObjectStore.from_url(mesh.object_store_url, s3_options=object_store), bus,
                         write_scope=policy.COMPILER_COMPILE, read_scope=policy.COMPILER_COMPILE, service=SERVICE)
    signer = ArtifactSigner(artifacts, mesh.home)  # verifies what it loads, signs what it compiles
    loader = LoadHandler(store, signer, artifacts, artifacts.cache_root(mesh.home), bus,
                         scope=policy.COMPILER_COMPILE, service=SERVICE)
    catalog = CompilerCatalog.build(compiler)
    lane = CompileLane()
    productionize = ProductionizeHandler(lane, store, signer, registry, bus, triton_root=compiler.triton_root(mesh),
                                         service=SERVICE)
    pipeline = CompilePipeline(runner=runner, catalog=catalog, registry=registry, loader=loader,
                               productionize=productionize, lane=lane, settings=compiler,
                               work_root=compiler.work_root(mesh))

    host = ServiceHost(
        SERVICE, server, verifier or TokenVerifier.from_settings(mesh, auth, audience=SERVICE), METHOD_SCOPES,
        metrics=metrics,
    )
    compiler_servicer, operations_servicer = CompilerServicer(pipeline, catalog), OperationsServicer(operations)
    host.add(lambda s: compiler_pb2_grpc.add_CompilerServicer_to_server(compiler_servicer, s), ["mlmesh.v1.Compiler"])
    host.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(operations_servicer, s),
             ["mlmesh.v1.Operations"])
    return CompilerApp(host=host, engine=engine, pipeline=pipeline, runner=runner, registry=registry, lane=lane,
                       catalog=catalog)


def quiet_exporter_logs() -> None:
    """The ONNX exporter logs a warning per optional op library it lacks (torchvision) on every export."""
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


async def serve(port: int | None = None) -> None:
    mesh, server, auth = MeshSettings(), ServerSettings(), AuthSettings()
    configure_logging(server.log_level, service=SERVICE)
    setup_tracing(SERVICE)  # before the host is built: its interceptor reads the process's tracer
    quiet_exporter_logs()
    endpoint = load_topology(mesh.topology_file).get(SERVICE)
    app = await build_compiler(mesh, server, auth)
    bound = await app.start(server.bind_host, endpoint.port if port is None else port)
    for info in app.catalog.compilers:
        state = info.availability()
        log.info("compiler %s: %s", info.alias, "available" if state.available else f"unavailable ({state.reason})")
    log.info("compiler serving on %s:%d", server.bind_host, bound)
    try:
        await app.host.run_until_signal()
    finally:
        await app.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.compiler", description="The mlmesh compiler service")
    parser.add_argument("--port", type=int, default=None, help="override the topology's port (0 picks a free one)")
    asyncio.run(serve(parser.parse_args(argv).port))
