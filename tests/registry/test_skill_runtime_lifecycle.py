"""The run ledger across a restart, and a registry whose mesh has no serving, on each database backend.
(Stand-in manifests are enough here: nothing reaches a model.)"""

from __future__ import annotations

import grpc
import pytest

from mlmesh.v1 import operations_pb2, operations_pb2_grpc, registry_pb2
from services.core.artifacts.messages import manifest_dict
from services.core.settings import AuthSettings, ServerSettings
from services.registry.server import RegistryApp, build_registry
from tests.registry.conftest import SEED_MODELS, SKILLS_DIR, manifest


async def publish_forecast_skill(app: RegistryApp):
    for name in SEED_MODELS:
        await app.domain.artifacts.register(manifest_dict(manifest(name)), actor="t", name=name, aliases=["prod"])
    spec = (SKILLS_DIR / "multi_horizon_forecast.yaml").read_text()
    return (await app.domain.skills.publish(spec, actor="t"))[0]


async def test_a_run_cut_off_by_a_stop_is_failed_when_the_registry_starts_again(mesh_settings):
    app = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    try:
        version = await publish_forecast_skill(app)
        run = await app.domain.ledger.start_run(skill_name=version.name, skill_version=version.version, inputs={},
                                                resolved=dict(version.lock), actor="t")
    finally:
        await app.close()
    again = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    try:
        recovered = await again.domain.ledger.get_run(run.id)
    finally:
        await again.close()
    assert (recovered.status, recovered.error) == ("FAILED", "interrupted by a restart")
    assert recovered.finished_at is not None


async def test_without_serving_in_the_topology_a_run_is_refused_before_it_starts(
    registry, stub, channel, operator_metadata, tmp_path
):
    topology = tmp_path / "topology.yaml"
    topology.write_text("services:\n  registry: {module: services.registry, port: 50051}\n")
    registry.runtime.serving.topology_file = topology
    await publish_forecast_skill(registry)
    request = registry_pb2.RunSkillRequest(ref="multi_horizon_forecast")
    request.inputs.update({"prices": [1.0, 2.0], "headlines": ["calm"]})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RunSkill(request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "serving" in caught.value.details()
    listed = await operations_pb2_grpc.OperationsStub(channel).ListOperations(
        operations_pb2.ListOperationsRequest(kind="skill_run"), metadata=operator_metadata)
    assert not listed.operations
    assert not (await stub.ListSkillRuns(registry_pb2.ListSkillRunsRequest())).runs
