"""Lineage graphs built from lifecycle events, and the run ledger with its experiment/test links."""

import grpc
import pytest

from mlmesh.v1 import common_pb2, registry_pb2
from tests.registry.conftest import manifest
from tests.registry.test_skills_service import register_seed_models, seed_yaml


async def _chain(stub, sign):
    """source -> artifact -> compiled, plus a skill that locks the artifact."""
    source = "hf://org/tiny@0123456789abcdef0123456789abcdef01234567"
    artifact = await stub.RegisterArtifact(
        registry_pb2.RegisterArtifactRequest(manifest=manifest("lin"), name="lin", source_uri=source)
    )
    compiled = await stub.RegisterCompiledArtifact(
        registry_pb2.RegisterCompiledArtifactRequest(
            compiled=common_pb2.CompiledArtifact(
                source_artifact_id=artifact.id, compiler="onnx", files=manifest("lin-onnx", files=1).files,
                signature=sign("lin-onnx", files=1),
            )
        )
    )
    return source, artifact, compiled


async def test_lineage_walks_up_and_down(stub, sign):
    source, artifact, compiled = await _chain(stub, sign)
    down = await stub.GetLineage(
        registry_pb2.GetLineageRequest(entity=artifact.id, direction=registry_pb2.LINEAGE_DIRECTION_DOWNSTREAM)
    )
    assert down.root == f"artifact:{artifact.id}"
    assert {(e.source, e.target) for e in down.edges} == {(f"artifact:{artifact.id}", f"compiled:{compiled.id}")}
    up = await stub.GetLineage(
        registry_pb2.GetLineageRequest(entity=f"compiled:{compiled.id}", direction=registry_pb2.LINEAGE_DIRECTION_UPSTREAM)
    )
    nodes = {n.entity: n.kind for n in up.nodes}
    assert nodes == {f"compiled:{compiled.id}": "compiled", f"artifact:{artifact.id}": "artifact", f"source:{source}": "source"}
    assert {e.operation for e in up.events} == {"register", "register_compiled"}
    assert all(e.actor == "test-operator" for e in up.events)
    shallow = await stub.GetLineage(
        registry_pb2.GetLineageRequest(
            entity=f"compiled:{compiled.id}", direction=registry_pb2.LINEAGE_DIRECTION_UPSTREAM, depth=1
        )
    )
    assert f"source:{source}" not in {n.entity for n in shallow.nodes}


async def test_recorded_events_join_the_graph(stub, sign):
    _, artifact, _ = await _chain(stub, sign)
    event = registry_pb2.LineageEvent(
        operation="deploy", inputs=[f"artifact:{artifact.id}"], outputs=["session:s-1"], service="serving"
    )
    event.parameters.update({"max_batch_size": 32})
    recorded = await stub.RecordLineage(registry_pb2.RecordLineageRequest(event=event))
    assert recorded.id and recorded.actor == "test-operator" and recorded.time.seconds > 0
    graph = await stub.GetLineage(registry_pb2.GetLineageRequest(entity="session:s-1"))
    assert f"artifact:{artifact.id}" in {n.entity for n in graph.nodes}
    assert [e.parameters["max_batch_size"] for e in graph.events if e.operation == "deploy"] == [32]


async def test_publishing_a_skill_links_it_to_the_artifacts_it_locks(stub):
    ids = await register_seed_models(stub)
    version = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha")))).version
    graph = await stub.GetLineage(
        registry_pb2.GetLineageRequest(entity=ids["alpha_bull"], direction=registry_pb2.LINEAGE_DIRECTION_DOWNSTREAM)
    )
    assert f"skill:regime_aware_alpha@{version.version}" in {n.entity for n in graph.nodes}


@pytest.mark.parametrize(
    "event,field",
    [
        (registry_pb2.LineageEvent(outputs=["x:y"]), "event.operation"),
        (registry_pb2.LineageEvent(operation="deploy"), "event.outputs"),
        (registry_pb2.LineageEvent(operation="deploy", inputs=[""], outputs=["x:y"]), "event.inputs[0]"),
    ],
)
async def test_bad_lineage_events(stub, event, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordLineage(registry_pb2.RecordLineageRequest(event=event))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field + ":")


async def test_lineage_bad_request(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetLineage(registry_pb2.GetLineageRequest(entity=""))
    assert caught.value.details().startswith("entity:")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetLineage(registry_pb2.GetLineageRequest(entity="artifact:x", depth=-1))
    assert caught.value.details().startswith("depth:")


async def test_experiments_and_tests(stub):
    experiment = await stub.CreateExperiment(registry_pb2.CreateExperimentRequest(name="alpha-q4", labels={"desk": "fx"}))
    test = await stub.CreateTest(registry_pb2.CreateTestRequest(experiment_id=experiment.id, name="holdout"))
    assert test.experiment_id == experiment.id
    listed = await stub.ListTests(registry_pb2.ListTestsRequest(experiment_id=experiment.id))
    assert [t.id for t in listed.tests] == [test.id]
    experiments = await stub.ListExperiments(registry_pb2.ListExperimentsRequest())
    assert [(e.name, dict(e.labels)) for e in experiments.experiments] == [("alpha-q4", {"desk": "fx"})]
    for call, request, code in [
        (stub.CreateExperiment, registry_pb2.CreateExperimentRequest(name="alpha-q4"), grpc.StatusCode.ALREADY_EXISTS),
        (stub.CreateExperiment, registry_pb2.CreateExperimentRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.CreateTest, registry_pb2.CreateTestRequest(experiment_id=experiment.id, name="holdout"), grpc.StatusCode.ALREADY_EXISTS),
        (stub.CreateTest, registry_pb2.CreateTestRequest(experiment_id="00000000-0000-0000-0000-000000000000", name="t"), grpc.StatusCode.NOT_FOUND),
        (stub.CreateTest, registry_pb2.CreateTestRequest(experiment_id="nope", name="t"), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request)
        assert caught.value.code() == code, request


async def test_run_ledger_records_and_filters_runs(stub, registry):
    await register_seed_models(stub)
    version = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha")))).version
    experiment = await stub.CreateExperiment(registry_pb2.CreateExperimentRequest(name="e"))
    test = await stub.CreateTest(registry_pb2.CreateTestRequest(experiment_id=experiment.id, name="t"))
    ledger = registry.domain.ledger
    linked = await ledger.start_run(
        skill_name=version.name, skill_version=version.version, inputs={"x": [1.0, 2.0]}, resolved=dict(version.lock),
        actor="agent-7", experiment_id=experiment.id, test_id=test.id,
    )
    steps = [{"step_id": "regime", "interface": "classifier", "model": "regime_classifier@prod", "duration_ms": 1.5}]
    await ledger.finish_run(linked.id, status="SUCCEEDED", outputs={"alpha": 0.25}, steps=steps)
    failed = await ledger.start_run(
        skill_name=version.name, skill_version=version.version, inputs={}, resolved={}, actor="agent-7"
    )
    await ledger.finish_run(failed.id, status="FAILED", outputs={}, steps=[], error="boom", failed_step="alpha")

    run = await stub.GetSkillRun(registry_pb2.GetSkillRunRequest(id=linked.id))
    assert run.status == registry_pb2.SKILL_RUN_STATUS_SUCCEEDED and run.outputs["alpha"] == 0.25
    assert run.steps[0].step_id == "regime" and run.experiment_id == experiment.id and run.test_id == test.id
    assert run.finished_at.seconds > 0 and run.duration_ms >= 0
    by_test = await stub.ListSkillRuns(registry_pb2.ListSkillRunsRequest(test_id=test.id))
    assert [r.id for r in by_test.runs] == [linked.id]
    by_status = await stub.ListSkillRuns(registry_pb2.ListSkillRunsRequest(status=registry_pb2.SKILL_RUN_STATUS_FAILED))
    assert [(r.id, r.failed_step) for r in by_status.runs] == [(failed.id, "alpha")]
    everything = await stub.ListSkillRuns(registry_pb2.ListSkillRunsRequest(skill_name="regime_aware_alpha"))
    assert len(everything.runs) == 2


async def test_ledger_refuses_bad_links(stub, registry):
    await register_seed_models(stub)
    version = (await stub.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=seed_yaml("regime_aware_alpha")))).version
    ledger = registry.domain.ledger
    from services.core.errors import InvalidArgument, NotFound

    with pytest.raises(NotFound) as caught:
        await ledger.start_run(skill_name="x", skill_version="f" * 64, inputs={}, resolved={}, actor="a")
    assert caught.value.field == "skill_version"
    with pytest.raises(NotFound):
        await ledger.start_run(
            skill_name=version.name, skill_version=version.version, inputs={}, resolved={}, actor="a",
            experiment_id="00000000-0000-0000-0000-000000000000",
        )
    with pytest.raises(InvalidArgument):
        await ledger.start_run(
            skill_name=version.name, skill_version=version.version, inputs={"x": float("nan")}, resolved={}, actor="a"
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSkillRun(registry_pb2.GetSkillRunRequest(id="00000000-0000-0000-0000-000000000000"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    runs = await stub.ListSkillRuns(registry_pb2.ListSkillRunsRequest())
    assert list(runs.runs) == []


async def test_untyped_entities_are_refused(stub):
    for entity in ("alpha_bull@prod", "no kind here", ":x"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetLineage(registry_pb2.GetLineageRequest(entity=entity))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("entity:")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordLineage(registry_pb2.RecordLineageRequest(
            event=registry_pb2.LineageEvent(operation="deploy", outputs=["session s-1"])))
    assert caught.value.details().startswith("event.outputs[0]:")
