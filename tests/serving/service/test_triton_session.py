"""One session on the real Triton binary, started by the serving service itself: its answers equal the
in-process executor's, a halt unloads it from Triton (Triton's own readiness goes false), resume reloads
it, undeploy removes its repository entry. And how an unspecified executor is chosen."""

from __future__ import annotations

import grpc
import pytest
import tritonclient.grpc.aio as aioclient

from mlmesh.v1 import serving_pb2
from services.core.errors import FailedPrecondition
from services.serving.interfaces.backends.factory import segmenter_backend
from services.serving.loading.placement import ExecutorPlacement, TritonTarget
from services.serving.triton.repository import ModelRepository
from tests.serving.service.conftest import Stub
from tests.serving.service.test_typed import market_rows, rows_msg
from tests.serving.triton.conftest import serving_with_triton, triton_setup  # noqa: F401  (setup once)

pytestmark = pytest.mark.asyncio(loop_scope="session")
ALL = ["serving.read", "serving.infer", "serving.deploy", "serving.halt"]


async def test_a_session_on_the_real_triton(triton_setup, mesh_settings, registry, models, issuer,  # noqa: F811
                                            tmp_path):
    async with serving_with_triton(mesh_settings, registry.address, tmp_path) as app:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = Stub(channel, issuer.mint("test-operator", "serving", ALL))
            on_triton = await stub.deploy("alpha_bull@prod", session_id="tr-alpha",
                                          executor=serving_pb2.EXECUTOR_KIND_TRITON)
            assert on_triton.executor == serving_pb2.EXECUTOR_KIND_TRITON
            await stub.deploy("alpha_bull@prod", session_id="tr-ref", executor=serving_pb2.EXECUTOR_KIND_IN_PROCESS)
            rows = rows_msg(market_rows(6, seed=21, regime=0))

            async def predict(session_id: str) -> list[float]:
                answer = await stub.Predict(serving_pb2.PredictRequest(session_id=session_id, rows=rows))
                return [p.values[0] for p in answer.predictions]

            reference = await predict("tr-ref")
            assert await predict("tr-alpha") == pytest.approx(reference, rel=1e-5, abs=1e-7)

            triton = aioclient.InferenceServerClient(app.triton.url)  # Triton itself, around serving
            try:
                assert await triton.is_model_ready("tr-alpha")
                await stub.HaltSession(serving_pb2.HaltSessionRequest(session_id="tr-alpha", reason="drill"))
                assert not await triton.is_model_ready("tr-alpha")  # no path around serving answers
                with pytest.raises(grpc.aio.AioRpcError) as halted:
                    await predict("tr-alpha")
                assert halted.value.code() == grpc.StatusCode.UNAVAILABLE

                resumed = await stub.ResumeSession(serving_pb2.ResumeSessionRequest(session_id="tr-alpha"))
                assert resumed.state == serving_pb2.SESSION_STATE_READY and await triton.is_model_ready("tr-alpha")
                assert await predict("tr-alpha") == pytest.approx(reference, rel=1e-5, abs=1e-7)

                await stub.UndeploySession(serving_pb2.UndeploySessionRequest(session_id="tr-alpha"))
                assert not await triton.is_model_ready("tr-alpha")
                assert not (tmp_path / "models" / "tr-alpha").exists()
            finally:
                await triton.close()
    assert app.triton.pid is None  # stopped with the service


async def test_an_unspecified_executor_is_chosen_by_the_mode(models):
    target = TritonTarget("127.0.0.1:1", ModelRepository("/nonexistent"))
    alpha, segmenter = models["alpha_bull"].backend(), segmenter_backend()
    auto = ExecutorPlacement("auto", target)
    assert auto.choose("auto", alpha) == "triton" and auto.choose("in_process", alpha) == "in_process"
    assert auto.choose("auto", segmenter) == "in_process"  # algorithmic: in-process only
    with pytest.raises(FailedPrecondition) as refused:
        auto.choose("triton", segmenter)
    assert refused.value.field == "executor"
    assert ExecutorPlacement("in_process", target).choose("auto", alpha) == "in_process"
    without = ExecutorPlacement("auto", None, "Triton did not start: boom")
    assert without.choose("auto", alpha) == "in_process" and without.default_kind == "in_process"
    with pytest.raises(FailedPrecondition, match="boom"):
        without.choose("triton", alpha)
    with pytest.raises(FailedPrecondition, match="boom"):
        ExecutorPlacement("triton", None, "Triton did not start: boom").choose("auto", alpha)
