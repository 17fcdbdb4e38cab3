"""Composition root of the registry: settings -> domain objects -> gRPC host. Nothing global."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from mlmesh.v1 import operations_pb2_grpc, registry_pb2_grpc
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.db.migrate import open_database
from services.core.grpc.server import ServiceHost, configure_logging
from services.core.observability.tracing import setup_tracing
from services.core.lineage import LineageBus
from services.core.observability.metrics import ServiceMetrics
from services.core.observability.metrics_operations import OperationMetrics
from services.core.operations.runner import OperationRunner
from services.core.operations.servicer import OperationsServicer
from services.core.operations.store import OperationStore
from services.core.settings import AuthSettings, MeshSettings, ObservabilitySettings, ServerSettings
from services.core.topology import load_topology
from services.registry import converters
from services.registry.artifacts import ArtifactCatalog
from services.registry.compiled import CompiledCatalog
from services.registry.ledger import RunLedger
from services.registry.lineage_store import LineageStore
from services.registry.servicer import RegistryDomain, RegistryServicer
from services.registry.skills.catalog import SkillCatalog
from services.registry.skills.runtime import MLSkillRuntime, fail_interrupted_runs
from services.registry.skills.serving_link import ServingLink

SERVICE = "registry"
log = logging.getLogger("mlmesh.registry")

_R = "/mlmesh.v1.Registry/"
_O = "/mlmesh.v1.Operations/"
METHOD_SCOPES = {
    **{_R + m: policy.REGISTRY_READ for m in (
        "GetArtifact", "ListArtifacts", "GetCompiledArtifact", "ListCompiledArtifacts", "GetLineage",
        "GetSkill", "ListSkills", "ListSkillVersions", "GetSkillRun", "ListSkillRuns", "ListExperiments",
        "ListTests",
    )},
    **{_R + m: policy.REGISTRY_WRITE for m in (
        "RegisterArtifact", "SetAlias", "RegisterCompiledArtifact", "CreateExperiment", "CreateTest",
    )},
    _R + "RecordLineage": policy.LINEAGE_WRITE,
    _R + "PublishSkill": policy.SKILLS_PUBLISH,
    _R + "RunSkill": policy.SKILLS_RUN,
    **{_O + m: policy.OPERATIONS_READ for m in ("GetOperation", "ListOperations", "WatchOperation")},
    _O + "CancelOperation": policy.OPERATIONS_CANCEL,
}


@dataclass
class RegistryApp:
    """A built registry: its domain, its database engine, its skill runs and its gRPC host."""

    host: ServiceHost
    engine: AsyncEngine
    domain: RegistryDomain
    operations: OperationStore
    runner: OperationRunner
    runtime: MLSkillRuntime

    async def start(self, bind_host: str, port: int) -> int:
        return await self.host.start(bind_host, port)

    async def stop(self, grace: float | None = None) -> None:
        await self.host.stop(grace)
        await self.close()

    async def close(self) -> None:
        await self.runner.aclose()  # runs in flight are recorded FAILED (interrupted), like a restart would
        await self.runtime.aclose()
        await self.engine.dispose()


async def build_registry(
    mesh: MeshSettings, server: ServerSettings, auth: AuthSettings, *, verifier: TokenVerifier | None = None,
    serving_address: str | None = None, observability: ObservabilitySettings | None = None,
) -> RegistryApp:
    """`serving_address` overrides the topology's `serving` (looked up when the first skill run starts)."""
    metrics = ServiceMetrics.build(SERVICE, observability, load_topology(mesh.topology_file).services.get(SERVICE))
    engine = await open_database(mesh)
    bus = LineageBus()
    lineage = LineageStore(engine)
    bus.subscribe(lineage.record)  # the registry is the lineage sink of record
    artifacts = ArtifactCatalog(engine, bus)
    skills, ledger = SkillCatalog(engine, artifacts, bus), RunLedger(engine)
    operations = OperationStore(engine, SERVICE)
    await operations.recover_interrupted()
    await fail_interrupted_runs(engine)
    # No progress throttle: a skill run reports once per finished step, and a watcher should see each.
    runner = OperationRunner(operations, progress_interval_s=0.0,
                             metrics=OperationMetrics(metrics.registry) if metrics else None)
    serving = ServingLink(TokenIssuer.from_settings(mesh, auth), address=serving_address,
                          topology_file=mesh.topology_file)
    runtime = MLSkillRuntime(skills=skills, artifacts=artifacts, ledger=ledger, runner=runner, serving=serving,
                             bus=bus, as_result=converters.skill_run)
    domain = RegistryDomain(
        artifacts=artifacts,
        compiled=CompiledCatalog(engine, bus),
        lineage=lineage,
        skills=skills,
        ledger=ledger,
        runtime=runtime,
    )
    host = ServiceHost(
        SERVICE, server, verifier or TokenVerifier.from_settings(mesh, auth, audience=SERVICE), METHOD_SCOPES,
        metrics=metrics,
    )
    registry_servicer = RegistryServicer(domain)
    operations_servicer = OperationsServicer(operations)
    host.add(lambda s: registry_pb2_grpc.add_RegistryServicer_to_server(registry_servicer, s), ["mlmesh.v1.Registry"])
    host.add(
        lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(operations_servicer, s),
        ["mlmesh.v1.Operations"],
    )
    return RegistryApp(host=host, engine=engine, domain=domain, operations=operations, runner=runner, runtime=runtime)


async def serve(port: int | None = None) -> None:
    mesh, server, auth = MeshSettings(), ServerSettings(), AuthSettings()
    configure_logging(server.log_level, service=SERVICE)
    setup_tracing(SERVICE)  # before the host is built: its interceptor reads the process's tracer
    endpoint = load_topology(mesh.topology_file).get(SERVICE)
    app = await build_registry(mesh, server, auth)
    bound = await app.start(server.bind_host, endpoint.port if port is None else port)
    log.info("registry serving on %s:%d (database %s)", server.bind_host, bound, _redact(mesh.database_url))
    try:
        await app.host.run_until_signal()
    finally:
        await app.close()


def _redact(url: str) -> str:
    """Database URLs may carry a password; logs get the URL without it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.registry", description="The mlmesh registry service")
    parser.add_argument("--port", type=int, default=None, help="override the topology's port (0 picks a free one)")
    asyncio.run(serve(parser.parse_args(argv).port))
