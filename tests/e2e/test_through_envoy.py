"""End to end through Envoy only: pull from the local hub -> compile to ONNX -> serve on both serving replicas
-> predict via MCP, tritonclient and REST -> run regime_aware_alpha -> halt_all via MCP and REST (with and
without cancel_running) -> every replica refuses new work. Every call goes to Envoy's port, except the last
check, which dials each replica itself.

Decisions (the why is in each step):
- The puller records a Hugging Face pull as files plus `metadata.source` only (no `architecture`), and the
  compiler rebuilds modules from that spec and never runs shipped code: compiling the pulled model is
  refused (FAILED_PRECONDITION, field `artifact`). The flow compiles a demo artifact instead, whose weights
  the test saves signed into the mesh's store and registers through Envoy.
- Deploy through Envoy lands on one replica per call. The flow deploys the same explicit session id until
  both replicas hold it (a replica that has it answers ALREADY_EXISTS): one id then names the model
  wherever Envoy sends a call, and each Deploy reply says which replica made it.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tritonclient.grpc import InferInput
from tritonclient.grpc import aio as triton_aio

from mlmesh.v1 import common_pb2, compiler_pb2, operations_pb2, puller_pb2, registry_pb2, serving_pb2, serving_pb2_grpc
from services.mesh.demo import data
from tests.e2e.conftest import HF_REPO, REPO
from tests.e2e.front import Front, market_rows, mcp_client, register_demo_models, rest

SUCCEEDED = operations_pb2.OPERATION_STATE_SUCCEEDED
SESSION = "e2e-alpha"
ROWS = market_rows(3, seed=5)


async def pull_from_hub(front: Front) -> common_pb2.Artifact:
    started = await front.puller.Pull(puller_pb2.PullRequest(source=f"hf://{HF_REPO}@v1", aliases=["prod"]),
                                      metadata=front.md("puller"), timeout=30)
    final = await front.finished(started.id)
    assert final.state == SUCCEEDED, final.error
    artifact = common_pb2.Artifact()
    assert final.result.Unpack(artifact)
    assert artifact.name == HF_REPO and {f.path for f in artifact.manifest.files} >= {"config.json",
                                                                                       "model.safetensors"}
    return artifact


async def compile_onnx(front: Front, ref: str) -> common_pb2.CompiledArtifact:
    started = await front.compiler.Compile(compiler_pb2.CompileRequest(artifact=ref, target="onnx"),
                                           metadata=front.md("compiler"), timeout=60)
    final = await front.finished(started.id, timeout_s=180)
    assert final.state == SUCCEEDED, final.error
    compiled = common_pb2.CompiledArtifact()
    assert final.result.Unpack(compiled) and compiled.compiler == "onnx"
    return compiled


async def deploy_on_every_replica(front: Front, model: str,
                                  replicas: set[str]) -> dict[str, serving_pb2.ServingSession]:
    made: dict[str, serving_pb2.ServingSession] = {}
    for _ in range(12):
        try:
            session = await front.serving.Deploy(serving_pb2.DeployRequest(model=model, session_id=SESSION),
                                                 metadata=front.md("serving"), timeout=120)
            made[session.replica] = session
        except grpc.aio.AioRpcError as exc:   # this call reached a replica that already holds the session
            assert exc.code() == grpc.StatusCode.ALREADY_EXISTS, exc
        if set(made) == replicas:
            return made
    pytest.fail(f"Envoy never reached every replica: deployed on {sorted(made)} of {sorted(replicas)}")


async def triton_predict(front: Front, client: triton_aio.InferenceServerClient) -> np.ndarray:
    x = np.asarray(ROWS, dtype=np.float32)
    tensor = InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = await client.infer(SESSION, [tensor], headers={"authorization": f"Bearer {front.mesh.token('serving')}"})
    return result.as_numpy("output")[:, 0]


async def test_pull_compile_serve_predict_run_halt_through_envoy(mesh):
    replicas = {f"serving@{address}" for address in mesh.serving_replicas}
    assert {s["name"]: s["replica"] for s in mesh.report["services"] if s["service"] == "serving"} == {
        "serving-0": 0, "serving-1": 1}
    async with grpc.aio.insecure_channel(mesh.envoy) as channel:
        front = Front(mesh, channel)

        # 1. pull: gRPC Puller through Envoy, followed with WatchOperation (the registry answers it)
        pulled = await pull_from_hub(front)
        metadata = dict(pulled.manifest.metadata)
        assert metadata["source"]["repo_id"] == HF_REPO and "architecture" not in metadata

        # 2. compile: the pulled model carries no architecture spec, so it cannot be; a demo model can
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await front.compiler.Compile(compiler_pb2.CompileRequest(artifact=pulled.id, target="onnx"),
                                         metadata=front.md("compiler"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "metadata.architecture" in refused.value.details()
        ids = await register_demo_models(front)
        compiled = await compile_onnx(front, "alpha_bull@prod")
        assert compiled.source_artifact_id == ids["alpha_bull"]

        # 3. serve on both replicas under one session id
        sessions = await deploy_on_every_replica(front, f"compiled:{compiled.id}", replicas)
        assert all(s.state == serving_pb2.SESSION_STATE_READY for s in sessions.values())

        # 4. predict three ways, all through Envoy; every way gives the same numbers
        async with mcp_client(mesh) as client:
            predicted = await client.call_tool("data.ml.predict", {"session_id": SESSION, "rows": ROWS})
        assert not predicted.is_error, predicted.content
        by_mcp = [p[0] for p in predicted.structured_content["predictions"]]
        assert predicted.structured_content["meta"]["artifact_id"] == f"compiled:{compiled.id}"

        triton = triton_aio.InferenceServerClient(mesh.envoy)
        try:   # several calls: Envoy spreads them over both replicas
            by_triton = [await triton_predict(front, triton) for _ in range(4)]
        finally:
            await triton.close()

        status, body = await rest(mesh, "POST", "/ml/predict",
                                  {"sessionId": SESSION, "rows": [{"values": r} for r in ROWS]}, "serving")
        assert status == 200, body
        by_rest = [p["values"][0] for p in body["predictions"]]
        for answer in (*by_triton, by_rest):
            assert answer == pytest.approx(by_mcp, rel=1e-5, abs=1e-6)

        # 5. the seed skill, published and run through Envoy
        await run_regime_aware_alpha(front, ids)

        # 6. the kill switch through MCP: the gateway's HaltAll reaches one replica, which halts the other
        async with mcp_client(mesh) as client:
            halted = await client.call_tool("data.ml.halt_all", {"reason": "e2e kill switch"})
        assert not halted.is_error, halted.content
        results = halted.structured_content["results"]
        assert all(r["halted"] and not r["error"] for r in results), results
        assert {r["replica"] for r in results if r["session_id"] == SESSION} == replicas

        # ... and POST /ml/serving/halt-all through the transcoder, wherever it lands, reports both replicas too
        status, body = await rest(mesh, "POST", "/ml/serving/halt-all", {"reason": "again, over REST"}, "serving")
        assert status == 200, body
        assert {r["replica"] for r in body["results"] if r["sessionId"] == SESSION} == replicas

        # ... and with {"cancel_running": true} (the console's checkbox), every replica answering. The transcoder
        # also accepts fields it does not know (dropped), so this shows the body is taken; that cancel_running
        # reaches serving through it is shown in tests/console (a batch on the model fails at once).
        status, body = await rest(mesh, "POST", "/ml/serving/halt-all",
                                  {"reason": "an emergency, over REST", "cancel_running": True}, "serving")
        assert status == 200, body
        assert {r["replica"] for r in body["results"] if r["sessionId"] == SESSION} == replicas
        assert all(r["halted"] and not r["error"] for r in body["results"]), body

        status, body = await rest(mesh, "POST", "/ml/predict", {"sessionId": SESSION, "rows": [{"values": ROWS[0]}]},
                                  "serving")
        assert status == 503 and body["code"] == grpc.StatusCode.UNAVAILABLE.value[0], body

    # 7. every replica refuses new work (dialled directly: Envoy would pick just one per call), and each
    #    had answered some of the predictions above (Envoy balanced them)
    for address in mesh.serving_replicas:
        async with grpc.aio.insecure_channel(address) as direct:
            stub = serving_pb2_grpc.ServingStub(direct)
            session = await stub.GetSession(serving_pb2.GetSessionRequest(session_id=SESSION),
                                            metadata=mesh.metadata("serving"), timeout=10)
            assert session.state == serving_pb2.SESSION_STATE_HALTED and session.stats.requests_total > 0
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Predict(
                    serving_pb2.PredictRequest(session_id=SESSION, rows=[serving_pb2.FeatureRow(values=ROWS[0])]),
                    metadata=mesh.metadata("serving"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, address
        assert "e2e kill switch" in refused.value.details()   # the first halt's reason stands


async def run_regime_aware_alpha(front: Front, ids: dict[str, str]) -> None:
    spec = (REPO / "configs" / "skills" / "regime_aware_alpha.yaml").read_text()
    published = await front.registry.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=spec),
                                                  metadata=front.md("registry"), timeout=30)
    assert published.version.lock["alpha_bull@prod"] == ids["alpha_bull"]
    request = registry_pb2.RunSkillRequest(ref="regime_aware_alpha")
    request.inputs.update({"market_features": ROWS[0], "alpha_features": ROWS[1]})
    started = await front.registry.RunSkill(request, metadata=front.md("registry"), timeout=30)
    final = await front.finished(started.id, timeout_s=120)
    assert final.state == SUCCEEDED, final.error
    run = registry_pb2.SkillRun()
    assert final.result.Unpack(run)
    assert run.status == registry_pb2.SKILL_RUN_STATUS_SUCCEEDED and run.outputs["regime"] in data.REGIMES
    assert run.steps[1].resolved_model == ids[f"alpha_{run.outputs['regime']}"]
    assert isinstance(run.outputs["alpha"], float)
