"""KServe ModelInfer refuses bad tensors before they reach a model: raw `ModelInferRequest`s (as any KServe v2
client may send them, not only tritonclient) with a wrong datatype, NaN through the numeric tensor path, a
shape that does not match the bytes or the model, a message over the server's limit, too many rows, or a
horizon over the forecaster's limit, each get the status and a message that names the tensor or rule."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import pytest_asyncio
from tritonclient.grpc import service_pb2, service_pb2_grpc

from mlmesh.v1 import serving_pb2
from services.core.settings import ServerSettings
from services.serving.interfaces.backends.forecaster import MAX_HORIZON
from tests.serving.service.conftest import SUBJECT, error_field
from tests.serving.service.test_typed import history, market_rows

pytestmark = pytest.mark.asyncio(loop_scope="session")
INVALID = grpc.StatusCode.INVALID_ARGUMENT
ALPHA, FORECAST = "kv-check-alpha", "kv-check-forecast"   # alpha_bull: 6 features, max_batch_size 32

ROWS = np.asarray(market_rows(2, seed=21, regime=0), dtype=np.float32)
HISTORY = np.asarray([history(21)], dtype=np.float32)
WITH_NAN = ROWS.copy()
WITH_NAN[1, 2] = np.nan                    # return_20d of the second row
OVER_LIMIT_ROWS = ServerSettings().max_message_bytes // ROWS[0].nbytes + 1


def infer_request(model: str, *tensors: tuple[str, str, list[int], bytes]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def forecast(horizon: np.ndarray, datatype: str = "INT32") -> service_pb2.ModelInferRequest:
    return infer_request(FORECAST, ("history", "FP32", list(HISTORY.shape), HISTORY.tobytes()),
                         ("horizon", datatype, [1, 1], horizon.tobytes()))


# id: (request builder, status, field named in mlmesh-error-field (None: not asserted), texts in the message)
CASES = {
    "unknown datatype": (lambda: infer_request(ALPHA, ("input", "FP8", [2, 6], ROWS.tobytes())),
                         INVALID, "input", ("unknown datatype 'FP8'",)),
    "FP32 bytes declared BYTES": (lambda: infer_request(ALPHA, ("input", "BYTES", [2, 6], ROWS.tobytes())),
                                  INVALID, "input", ("BYTES",)),
    "FP32 horizon": (lambda: forecast(np.float32([[4]]), "FP32"), INVALID, "horizon", ("expected one integer",)),
    "NaN through the numeric tensor path": (
        lambda: infer_request(ALPHA, ("input", "FP32", [2, 6], WITH_NAN.tobytes())),
        INVALID, "input[1]", ("FiniteGuard", "'return_20d'", "value=nan", "not finite")),
    "Inf in a history": (lambda: infer_request(FORECAST, ("history", "FP32", list(HISTORY.shape),
                                                          (HISTORY * np.inf).tobytes()),
                                               ("horizon", "INT32", [1, 1], np.int32([[4]]).tobytes())),
                         INVALID, None, ("FiniteGuard", "not finite")),
    "shape the bytes do not hold": (lambda: infer_request(ALPHA, ("input", "FP32", [3, 6], ROWS.tobytes())),
                                    INVALID, "input", ("48 bytes do not hold shape [3, 6] of FP32",)),
    "shape of 2**80 elements": (lambda: infer_request(ALPHA, ("input", "FP32", [2**40, 2**40], ROWS.tobytes())),
                                INVALID, "input", ("do not hold shape",)),
    "negative dimension": (lambda: infer_request(ALPHA, ("input", "FP32", [-2, 6], ROWS.tobytes())),
                           INVALID, "input", ("negative size",)),
    "no rows": (lambda: infer_request(ALPHA, ("input", "FP32", [0, 6], b"")), INVALID, "input", ("no rows",)),
    "three dimensions": (lambda: infer_request(ALPHA, ("input", "FP32", [2, 6, 1], ROWS.tobytes())),
                         INVALID, "input", ("[batch, n]",)),
    "4 features for a 6-feature model": (
        lambda: infer_request(ALPHA, ("input", "FP32", [3, 4], ROWS.tobytes())),
        INVALID, "input", ("TensorShapeGuard", "expected 6 features per row, got 4")),
    "more raw contents than inputs": (
        lambda: service_pb2.ModelInferRequest(
            model_name=ALPHA, inputs=[service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                                                    shape=[2, 6])],
            raw_input_contents=[ROWS.tobytes(), b""]),
        INVALID, "raw_input_contents", ("2 raw contents for 1 inputs",)),
    "unknown tensor": (lambda: infer_request(ALPHA, ("rows", "FP32", [2, 6], ROWS.tobytes())),
                       INVALID, "rows", ("unknown input", "['input']")),
    "missing horizon": (lambda: infer_request(FORECAST, ("history", "FP32", list(HISTORY.shape), HISTORY.tobytes())),
                        INVALID, "horizon", ("missing input",)),
    "more rows than max_batch_size": (
        lambda: infer_request(ALPHA, ("input", "FP32", [40, 6],
                                      np.asarray(market_rows(40, seed=22, regime=0), np.float32).tobytes())),
        INVALID, None, ("40 rows exceed the session's max_batch_size of 32",)),
    "message over the server's limit": (
        lambda: infer_request(ALPHA, ("input", "FP32", [OVER_LIMIT_ROWS, 6],
                                      np.zeros((OVER_LIMIT_ROWS, 6), np.float32).tobytes())),
        grpc.StatusCode.RESOURCE_EXHAUSTED, None, ("larger than max",)),
    "horizon over the limit": (lambda: forecast(np.int32([[MAX_HORIZON + 1]])), INVALID, "horizon",
                               (f"from 1 to {MAX_HORIZON}",)),
    "INT64 horizon of 2**40": (lambda: forecast(np.int64([[2**40]]), "INT64"), INVALID, "horizon",
                               (f"from 1 to {MAX_HORIZON}",)),
    "horizon 0": (lambda: forecast(np.int32([[0]])), INVALID, "horizon", (f"from 1 to {MAX_HORIZON}",)),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kserve(stub, serving, models, issuer):
    await stub.deploy("alpha_bull", session_id=ALPHA)
    await stub.deploy("price_forecaster", session_id=FORECAST)
    metadata = (("authorization", f"Bearer {issuer.mint(SUBJECT, 'serving', ['serving.infer'])}"),)
    async with grpc.aio.insecure_channel(serving.address) as channel:
        infer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        yield lambda request: infer(request, metadata=metadata, timeout=30)


@pytest.mark.parametrize("case", CASES)
async def test_a_bad_tensor_is_refused_with_its_status_and_name(kserve, stub, case):
    build, code, field, texts = CASES[case]
    finite_trips = await _finite_trips(stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await kserve(build())
    assert refused.value.code() == code, refused.value.details()
    if field is not None:
        assert error_field(refused.value) == field, refused.value.details()
    for text in texts:
        assert text in refused.value.details()
    if case == "NaN through the numeric tensor path":   # refused by the rule, before the model
        assert await _finite_trips(stub) == finite_trips + 1


async def _finite_trips(stub) -> int:
    session = await stub.GetSession(serving_pb2.GetSessionRequest(session_id=ALPHA))
    return session.stats.rule_trips["FiniteGuard"]


async def test_the_sessions_still_answer_good_tensors_after_the_refusals(kserve):
    reply = await kserve(infer_request(ALPHA, ("input", "FP32", [2, 6], ROWS.tobytes())))
    assert [(o.name, list(o.shape)) for o in reply.outputs] == [("output", [2, 1])]
    assert np.isfinite(np.frombuffer(reply.raw_output_contents[0], dtype=np.float32)).all()
    reply = await kserve(forecast(np.int32([[MAX_HORIZON]])))
    assert [(o.name, list(o.shape)) for o in reply.outputs] == [("forecast", [1, MAX_HORIZON])]
