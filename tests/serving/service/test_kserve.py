"""KServe v2 on the serving port, driven by tritonclient UNCHANGED: the aio client and the sync client (in
worker threads: the service runs on this test's event loop)."""

from __future__ import annotations

import asyncio
import queue
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as syncclient
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import InferInput, InferRequestedOutput, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from mlmesh.v1 import serving_pb2
from services.core.auth.policy import SERVING_INFER
from tests.serving.service.conftest import KINDS, SUBJECT
from tests.serving.service.test_typed import history, market_rows, rows_msg

pytestmark = pytest.mark.asyncio(loop_scope="session")


def tensor(name: str, array: np.ndarray, datatype: str) -> InferInput:
    item = InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    return item


@pytest.fixture(scope="module")
def headers(issuer) -> dict[str, str]:
    scopes = ["serving.read", "serving.infer", "serving.deploy", "serving.halt"]
    return {"authorization": f"Bearer {issuer.mint(SUBJECT, 'serving', scopes)}"}


async def test_the_aio_client_works_unchanged(stub, serving, models, headers, issuer):
    client = aioclient.InferenceServerClient(serving.address)
    try:
        assert await client.is_server_live(headers=headers) and await client.is_server_ready(headers=headers)
        assert (await client.get_server_metadata(headers=headers, as_json=True))["name"] == "mlmesh-serving"
        await stub.deploy("alpha_bull", session_id="kv-alpha")
        assert await client.is_model_ready("kv-alpha", headers=headers)
        assert not await client.is_model_ready("kv-nothing", headers=headers)

        meta = await client.get_model_metadata("kv-alpha", headers=headers, as_json=True)
        assert meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "6"]}]
        assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": ["-1", "1"]}]
        config = (await client.get_model_config("kv-alpha", headers=headers, as_json=True))["config"]
        assert config["max_batch_size"] == 32 and config["input"][0]["dims"] == ["6"]

        # raw input -> raw output, equal to the typed Predict
        rows = market_rows(3, seed=11, regime=0)
        x = np.asarray(rows, dtype=np.float32)
        result = await client.infer("kv-alpha", [tensor("input", x, "FP32")], headers=headers,
                                    outputs=[InferRequestedOutput("output")], request_id="r-1")
        assert result.get_response().raw_output_contents and result.get_response().id == "r-1"
        typed = await stub.Predict(serving_pb2.PredictRequest(session_id="kv-alpha", rows=rows_msg(x.tolist())))
        assert result.as_numpy("output")[:, 0].tolist() == pytest.approx([p.values[0] for p in typed.predictions])
        result_alpha = result

        # BYTES in and out: an analyzer over texts
        await stub.deploy("news_sentiment", session_id="kv-news", interface=KINDS["analyzer"])
        texts = ["hooli beats record profit growth", "initech plunges on fraud lawsuit", "globex holds annual meeting"]
        array = np.array([[t.encode()] for t in texts], dtype=object)
        result = await client.infer("kv-news", [tensor("texts", array, "BYTES")], headers=headers)
        typed = await stub.Analyze(serving_pb2.AnalyzeRequest(session_id="kv-news", texts=texts))
        assert [v.decode() for v in result.as_numpy("label")[:, 0]] == [a.label for a in typed.analyses]
        assert result.as_numpy("score")[:, 0].tolist() == pytest.approx([a.score for a in typed.analyses], rel=1e-5)
        assert result.as_numpy("scores").shape == (3, 3)

        # one row per sequence: forecaster and segmenter
        await stub.deploy("price_forecaster", session_id="kv-forecast")
        histories = np.asarray([history(1), history(2)], dtype=np.float32)
        result = await client.infer("kv-forecast", [tensor("history", histories, "FP32"),
                                                    tensor("horizon", np.array([[4]], dtype=np.int32), "INT32")],
                                    headers=headers)
        typed = await stub.Forecast(serving_pb2.ForecastRequest(session_id="kv-forecast",
                                                                history=histories[1].tolist(), horizon=4))
        assert result.as_numpy("forecast").shape == (2, 4)
        assert result.as_numpy("forecast")[1].tolist() == pytest.approx(list(typed.forecast), rel=1e-5)
        await stub.deploy("builtin:changepoint", session_id="kv-segment")
        series = np.asarray([[0.0] * 20 + [4.0] * 20, [1.0] * 40], dtype=np.float32)
        result = await client.infer("kv-segment", [tensor("series", series, "FP32")], headers=headers)
        assert result.as_numpy("change_points").tolist() == [[20], [-1]]
        assert result.as_numpy("count")[:, 0].tolist() == [1, 0]

        # typed contents in (no raw_input_contents), raw contents out, through the generated stub itself
        async with grpc.aio.insecure_channel(serving.address) as channel:
            kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = service_pb2.ModelInferRequest(model_name="kv-news", id="typed")
            texts_in = request.inputs.add(name="texts", datatype="BYTES", shape=[1, 1])
            texts_in.contents.bytes_contents.append(b"record profit")
            reply = await kserve.ModelInfer(request, metadata=tuple(headers.items()))
            assert reply.id == "typed" and len(reply.raw_output_contents) == 3
            assert not reply.outputs[0].contents.ListFields()  # answers are raw, always
            request = service_pb2.ModelInferRequest(model_name="kv-alpha")
            rows_in = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
            rows_in.contents.fp32_contents.extend(x.ravel().tolist())
            reply = await kserve.ModelInfer(request, metadata=tuple(headers.items()))
        values = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32)
        assert values.tolist() == pytest.approx(result_alpha.as_numpy("output")[:, 0].tolist(), rel=1e-6)

        # a bad tensor names itself
        with pytest.raises(InferenceServerException) as bad:
            await client.infer("kv-alpha", [tensor("nope", x, "FP32")], headers=headers)
        assert bad.value.status() == "StatusCode.INVALID_ARGUMENT" and "nope" in bad.value.message()

        stats = (await client.get_inference_statistics("kv-alpha", headers=headers, as_json=True))["model_stats"][0]
        assert stats["name"] == "kv-alpha" and int(stats["inference_stats"]["success"]["count"]) >= 2
        assert int(stats["inference_stats"]["compute_infer"]["ns"]) > 0 and stats["batch_stats"]
        index = (await client.get_model_repository_index(headers=headers, as_json=True))["models"]
        assert {"name": "kv-alpha", "version": "1", "state": "READY"} in index

        # the kill switch: unload halts, load resumes
        await client.unload_model("kv-alpha", headers=headers)
        assert not await client.is_model_ready("kv-alpha", headers=headers)
        with pytest.raises(InferenceServerException) as halted:
            await client.infer("kv-alpha", [tensor("input", x, "FP32")], headers=headers)
        assert halted.value.status() == "StatusCode.UNAVAILABLE" and "halted" in halted.value.message()
        await client.load_model("kv-alpha", headers=headers)
        assert await client.is_model_ready("kv-alpha", headers=headers)
        with pytest.raises(InferenceServerException) as missing:
            await client.load_model("kv-nothing", headers=headers)
        assert missing.value.status() == "StatusCode.NOT_FOUND"

        # a bidirectional stream, one failure reported in its own message
        async def requests():
            for i in range(4):
                yield {"model_name": "kv-alpha", "inputs": [tensor("input", x[i % 3:i % 3 + 1], "FP32")],
                       "request_id": f"s-{i}"}
            yield {"model_name": "kv-nothing", "inputs": [tensor("input", x, "FP32")], "request_id": "s-bad"}

        answers, errors = {}, []
        async for result, error in client.stream_infer(requests(), headers=headers):
            if error is not None:
                errors.append(error.message())
            else:
                answers[result.get_response().id] = result.as_numpy("output")[0, 0]
        assert sorted(answers) == ["s-0", "s-1", "s-2", "s-3"] and len(errors) == 1 and "kv-nothing" in errors[0]
        assert answers["s-3"] == pytest.approx(answers["s-0"])

        # auth: KServe calls need a token for "serving" with the method's scope
        with pytest.raises(InferenceServerException) as anonymous:
            await client.is_server_live()
        assert anonymous.value.status() == "StatusCode.UNAUTHENTICATED"
        reader = {"authorization": f"Bearer {issuer.mint(SUBJECT, 'serving', ['serving.read'])}"}
        with pytest.raises(InferenceServerException) as denied:
            await client.infer("kv-alpha", [tensor("input", x, "FP32")], headers=reader)
        assert denied.value.status() == "StatusCode.PERMISSION_DENIED" and SERVING_INFER in denied.value.message()
    finally:
        await client.close()


async def test_the_sync_client_works_unchanged(stub, serving, models, headers):
    batching = serving_pb2.BatchingConfig(max_batch_size=1)
    await stub.deploy("price_forecaster", session_id="kv-slow", batching=batching)
    await stub.deploy("alpha_bull", session_id="kv-sync")
    x = np.asarray(market_rows(2, seed=13, regime=0), dtype=np.float32)
    client = syncclient.InferenceServerClient(serving.address)

    def run(fn, *args, **kwargs):
        return asyncio.to_thread(fn, *args, headers=headers, **kwargs)

    try:
        assert await run(client.is_server_live) and await run(client.is_model_ready, "kv-sync")
        result = await run(client.infer, "kv-sync", [tensor("input", x, "FP32")])
        assert result.as_numpy("output").shape == (2, 1)
        meta = await run(client.get_model_metadata, "kv-slow", as_json=True)
        assert [i["name"] for i in meta["inputs"]] == ["history", "horizon"]
        assert (await run(client.get_model_config, "kv-slow", as_json=True))["config"]["max_batch_size"] == 1

        # async_infer, then cancel: the request leaves the engine, and the callback hears CANCELLED
        outcome: queue.Queue = queue.Queue()
        slow = [tensor("history", np.asarray([history(5)], dtype=np.float32), "FP32"),
                tensor("horizon", np.array([[4000]], dtype=np.int32), "INT32")]
        context = await run(client.async_infer, "kv-slow", slow, lambda result, error: outcome.put((result, error)))
        session = serving.manager.get("kv-slow")
        deadline = time.monotonic() + 5
        while session.loop.running == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        context.cancel()
        result, error = await asyncio.to_thread(outcome.get, True, 5)
        assert result is None and error.status() == "StatusCode.CANCELLED"
        while session.loop.running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert session.loop.running == 0 and session.loop.stats.requests_cancelled == 1

        # a stream: start_stream / async_stream_infer / stop_stream
        streamed: queue.Queue = queue.Queue()
        await run(client.start_stream, lambda result, error: streamed.put((result, error)))
        for i in range(3):
            await asyncio.to_thread(client.async_stream_infer, "kv-sync", [tensor("input", x, "FP32")],
                                    request_id=f"ss-{i}")
        got = [await asyncio.to_thread(streamed.get, True, 5) for _ in range(3)]
        await asyncio.to_thread(client.stop_stream)
        assert sorted(r.get_response().id for r, e in got if e is None) == ["ss-0", "ss-1", "ss-2"]

        await run(client.unload_model, "kv-sync")
        assert not await run(client.is_model_ready, "kv-sync")
        await run(client.load_model, "kv-sync")
        assert await run(client.is_model_ready, "kv-sync")
        stats = await run(client.get_inference_statistics, "kv-sync", as_json=True)
        assert int(stats["model_stats"][0]["inference_count"]) >= 4
    finally:
        await asyncio.to_thread(client.close)


async def test_a_kserve_timeout_shorter_than_the_grpc_deadline_is_answered_deadline_exceeded(stub, serving, models,
                                                                                             headers):
    """Triton's `timeout` request parameter (µs) bounds a call that has no gRPC deadline of its own: a request
    waiting behind a long forecast is answered DEADLINE_EXCEEDED at that timeout, never left waiting."""
    batching = serving_pb2.BatchingConfig(max_batch_size=1, iteration_level=False)
    await stub.deploy("price_forecaster", session_id="kv-timeout", batching=batching)
    long = asyncio.ensure_future(stub.Forecast(serving_pb2.ForecastRequest(session_id="kv-timeout",
                                                                           history=history(), horizon=3000)))
    session = serving.manager.get("kv-timeout")
    deadline = time.monotonic() + 5
    while session.loop.running == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    client = aioclient.InferenceServerClient(serving.address)
    try:
        inputs = [tensor("history", np.asarray([history(5)], dtype=np.float32), "FP32"),
                  tensor("horizon", np.array([[4]], dtype=np.int32), "INT32")]
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as refused:
            await asyncio.wait_for(client.infer("kv-timeout", inputs, headers=headers, timeout=50_000), 20)
        assert refused.value.status() == "StatusCode.DEADLINE_EXCEEDED", refused.value
        assert time.monotonic() - started < 10
    finally:
        await client.close()
    assert len((await long).forecast) == 3000   # the session goes on serving
