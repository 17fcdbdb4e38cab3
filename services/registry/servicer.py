"""The Registry gRPC servicer: proto in, domain call, proto out. Errors are mapped by the interceptor."""

from __future__ import annotations

from dataclasses import dataclass

from mlmesh.v1 import operations_pb2, registry_pb2, registry_pb2_grpc
from services.core.artifacts.messages import manifest_dict
from services.core.auth.principal import current_principal
from services.core.errors import Unimplemented
from services.registry import converters as cv
from services.registry.artifacts import ArtifactCatalog
from services.registry.compiled import CompiledCatalog
from services.registry.ledger import RunLedger
from services.registry.lineage_store import LineageStore
from services.registry.skills.catalog import SkillCatalog
from services.registry.skills.runtime import MLSkillRuntime


@dataclass(frozen=True)
class RegistryDomain:
    artifacts: ArtifactCatalog
    compiled: CompiledCatalog
    lineage: LineageStore
    skills: SkillCatalog
    ledger: RunLedger
    runtime: MLSkillRuntime | None = None  # None: this registry runs no skills (RunSkill is UNIMPLEMENTED)


def _actor() -> str:
    principal = current_principal()
    return principal.subject if principal else "anonymous"


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, domain: RegistryDomain) -> None:
        self._d = domain

    # ---- artifacts ----

    async def RegisterArtifact(self, request, context):
        record = await self._d.artifacts.register(
            manifest_dict(request.manifest), actor=_actor(), name=request.name, aliases=list(request.aliases),
            labels=dict(request.labels), source_uri=request.source_uri, signature=cv.signature_data(request.signature),
        )
        return cv.artifact(record)

    async def GetArtifact(self, request, context):
        return cv.artifact(await self._d.artifacts.get(request.ref))

    async def ListArtifacts(self, request, context):
        page = await self._d.artifacts.list(
            name=request.name, framework=request.framework, labels=dict(request.labels),
            page_size=request.page_size, page_token=request.page_token,
        )
        return registry_pb2.ListArtifactsResponse(
            artifacts=[cv.artifact(r) for r in page.items], next_page_token=page.next_token
        )

    async def SetAlias(self, request, context):
        record = await self._d.artifacts.set_alias(request.name, request.alias, request.artifact_id, actor=_actor())
        return cv.artifact(record)

    # ---- compiled artifacts ----

    async def RegisterCompiledArtifact(self, request, context):
        record = await self._d.compiled.register(
            cv.compiled_dict(request.compiled), signature=cv.signature_data(request.compiled.signature), actor=_actor()
        )
        return cv.compiled(record)

    async def GetCompiledArtifact(self, request, context):
        return cv.compiled(await self._d.compiled.get(request.id))

    async def ListCompiledArtifacts(self, request, context):
        page = await self._d.compiled.list(
            source_artifact_id=request.source_artifact_id, compiler=request.compiler,
            page_size=request.page_size, page_token=request.page_token,
        )
        return registry_pb2.ListCompiledArtifactsResponse(
            compiled=[cv.compiled(r) for r in page.items], next_page_token=page.next_token
        )

    # ---- lineage ----

    async def RecordLineage(self, request, context):
        return cv.event(await self._d.lineage.record(cv.lineage_event(request.event, actor=_actor())))

    async def GetLineage(self, request, context):
        data = await self._d.lineage.graph(
            request.entity, direction=cv.DIRECTIONS.get(request.direction, "both"), depth=request.depth
        )
        return cv.graph(data)

    # ---- skills ----

    async def PublishSkill(self, request, context):
        version, created = await self._d.skills.publish(
            request.spec_yaml, actor=_actor(), expected_version=request.expected_version
        )
        return registry_pb2.PublishSkillResponse(version=cv.skill_version(version), created=created)

    async def GetSkill(self, request, context):
        return cv.skill_version(await self._d.skills.get(request.ref))

    async def ListSkills(self, request, context):
        page = await self._d.skills.list(page_size=request.page_size, page_token=request.page_token)
        return registry_pb2.ListSkillsResponse(skills=[cv.skill(r) for r in page.items], next_page_token=page.next_token)

    async def ListSkillVersions(self, request, context):
        page = await self._d.skills.versions(request.name, page_size=request.page_size, page_token=request.page_token)
        return registry_pb2.ListSkillVersionsResponse(
            versions=[cv.skill_version(r) for r in page.items], next_page_token=page.next_token
        )

    async def RunSkill(self, request, context) -> operations_pb2.Operation:
        if self._d.runtime is None:
            raise Unimplemented("this registry was built without a skill runtime")
        return await self._d.runtime.start(
            request.ref, cv.struct_dict(request.inputs), actor=_actor(), experiment_id=request.experiment_id,
            test_id=request.test_id, reresolve_aliases=request.reresolve_aliases,
        )

    async def GetSkillRun(self, request, context):
        return cv.skill_run(await self._d.ledger.get_run(request.id))

    async def ListSkillRuns(self, request, context):
        page = await self._d.ledger.list_runs(
            skill_name=request.skill_name, skill_version=request.skill_version, experiment_id=request.experiment_id,
            test_id=request.test_id, status=cv.RUN_STATUS_NAMES.get(request.status, ""),
            page_size=request.page_size, page_token=request.page_token,
        )
        return registry_pb2.ListSkillRunsResponse(runs=[cv.skill_run(r) for r in page.items], next_page_token=page.next_token)

    # ---- experiments and tests ----

    async def CreateExperiment(self, request, context):
        record = await self._d.ledger.create_experiment(
            request.name, description=request.description, labels=dict(request.labels)
        )
        return cv.experiment(record)

    async def ListExperiments(self, request, context):
        page = await self._d.ledger.list_experiments(page_size=request.page_size, page_token=request.page_token)
        return registry_pb2.ListExperimentsResponse(
            experiments=[cv.experiment(r) for r in page.items], next_page_token=page.next_token
        )

    async def CreateTest(self, request, context):
        record = await self._d.ledger.create_test(request.experiment_id, request.name, description=request.description)
        return cv.ml_test(record)

    async def ListTests(self, request, context):
        page = await self._d.ledger.list_tests(
            request.experiment_id, page_size=request.page_size, page_token=request.page_token
        )
        return registry_pb2.ListTestsResponse(tests=[cv.ml_test(r) for r in page.items], next_page_token=page.next_token)
