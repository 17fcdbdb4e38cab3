"""Bad input gets a precise status naming the field; rule trips name the rule, feature and value; a full
queue is RESOURCE_EXHAUSTED; deadlines and refused deploys (bad references, packs, interfaces, executors,
unsigned or tampered artifacts)."""

from __future__ import annotations

import asyncio
import copy

import grpc
import pytest
import torch

from mlmesh.v1 import serving_pb2
from tests.serving.service.conftest import KINDS, error_field
from tests.serving.service.test_typed import history, market_rows, rows_msg

pytestmark = pytest.mark.asyncio(loop_scope="session")
INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION


async def fails(call, code: grpc.StatusCode, field: str | None = None, *texts: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    if field is not None:
        assert error_field(info.value) == field, info.value.details()
    for text in texts:
        assert text in info.value.details()
    return info.value.details()


async def test_request_validation_names_the_field(stub, models):
    await stub.deploy("alpha_bull", session_id="bad-alpha", batching=serving_pb2.BatchingConfig(max_batch_size=4))
    await stub.deploy("price_forecaster", session_id="bad-forecast")
    good = rows_msg(market_rows(1, regime=0))

    await fails(stub.Predict(serving_pb2.PredictRequest(session_id="nope", rows=good)),
                grpc.StatusCode.NOT_FOUND, "session_id")
    await fails(stub.Forecast(serving_pb2.ForecastRequest(session_id="bad-alpha", history=[1.0] * 40, horizon=2)),
                PRECONDITION, "session_id", "predictor")
    await fails(stub.Predict(serving_pb2.PredictRequest(session_id="bad-alpha")), INVALID, "rows")
    await fails(stub.Forecast(serving_pb2.ForecastRequest(session_id="bad-forecast", history=history(), horizon=0)),
                INVALID, "horizon")
    await fails(stub.Predict(serving_pb2.PredictRequest(session_id="bad-alpha", rows=good * 5)), INVALID, "rows",
                "max_batch_size")
    bogus = serving_pb2.FeatureRow(named={"return_1d": 0.0, "bogus": 1.0})
    await fails(stub.Predict(serving_pb2.PredictRequest(session_id="bad-alpha", rows=[bogus])), INVALID,
                "rows[0].bogus", "bogus")
    await fails(stub.Predict(serving_pb2.PredictRequest(session_id="bad-alpha", rows=rows_msg([[1.0, 2.0]]))),
                INVALID, "rows", "TensorShapeGuard")

    # rules: the OOD guard names itself, the feature and the value; NaN never reaches the model
    far = market_rows(2, regime=0)
    far[1][5] = 10_000.0  # rsi_14
    details = await fails(stub.Predict(serving_pb2.PredictRequest(session_id="bad-alpha", rows=rows_msg(far))),
                          INVALID, "rows[1]", "OODGuard", "rsi_14")
    assert "z=" in details
    nan = market_rows(1, regime=0)
    nan[0][2] = float("nan")
    await fails(stub.Predict(serving_pb2.PredictRequest(session_id="bad-alpha", rows=rows_msg(nan))),
                INVALID, "rows[0]", "FiniteGuard", "return_20d", "nan")
    session = await stub.GetSession(serving_pb2.GetSessionRequest(session_id="bad-alpha"))
    assert session.stats.rule_trips["OODGuard"] == 1 and session.stats.rule_trips["FiniteGuard"] == 1
    assert session.stats.breaker_state == serving_pb2.BREAKER_STATE_CLOSED


async def test_a_full_queue_and_a_passed_deadline(stub, models):
    batching = serving_pb2.BatchingConfig(max_batch_size=1, max_queue_size=1, iteration_level=False)
    await stub.deploy("price_forecaster", session_id="tight-forecast", batching=batching)
    long = serving_pb2.ForecastRequest(session_id="tight-forecast", history=history(), horizon=600)
    running = asyncio.ensure_future(stub.Forecast(long))
    await asyncio.sleep(0.1)  # running now; the next one waits, the one after is refused
    waiting = asyncio.ensure_future(stub.Forecast(long))
    await asyncio.sleep(0.05)
    await fails(stub.Forecast(long), grpc.StatusCode.RESOURCE_EXHAUSTED, None, "queue full")
    await fails(stub.Forecast(long, timeout=0.05), grpc.StatusCode.RESOURCE_EXHAUSTED)
    waiting.cancel()
    assert len((await running).forecast) == 600
    # a deadline shorter than the work: DEADLINE_EXCEEDED, and the session goes on serving
    await fails(stub.Forecast(serving_pb2.ForecastRequest(session_id="tight-forecast", history=history(),
                                                          horizon=4000), timeout=0.05),
                grpc.StatusCode.DEADLINE_EXCEEDED)
    short = serving_pb2.ForecastRequest(session_id="tight-forecast", history=history(), horizon=3)
    assert len((await stub.Forecast(short, timeout=10)).forecast) == 3


async def test_deploy_refusals_name_what_is_wrong(stub, models, serving):
    before = {s.id for s in serving.manager.list()}
    await fails(stub.deploy(""), INVALID, "model")
    await fails(stub.deploy("no_such_model@prod"), grpc.StatusCode.NOT_FOUND, "model")
    await fails(stub.deploy("compiled:sha256:" + "0" * 64), grpc.StatusCode.NOT_FOUND, "model")
    await fails(stub.deploy("builtin:nope"), INVALID, "model", "builtin:changepoint")
    await fails(stub.deploy("alpha_bull", rule_pack="no_such_pack"), INVALID, "rule_pack")
    await fails(stub.deploy("alpha_bull", interface=KINDS["forecaster"]), INVALID, "interface")
    await fails(stub.deploy("builtin:changepoint", interface=KINDS["predictor"]), INVALID, "interface")
    await fails(stub.deploy("alpha_bull", batching=serving_pb2.BatchingConfig(max_batch_size=-1)), INVALID,
                "batching.max_batch_size")
    # bounded: a session's batch and queue are memory it holds (overload must not grow them without limit)
    await fails(stub.deploy("alpha_bull", batching=serving_pb2.BatchingConfig(max_batch_size=65_537)), INVALID,
                "batching.max_batch_size", "65536")
    await fails(stub.deploy("alpha_bull", batching=serving_pb2.BatchingConfig(max_queue_size=1_000_001)), INVALID,
                "batching.max_queue_size", "1000000")
    await fails(stub.deploy("alpha_bull", batching=serving_pb2.BatchingConfig(max_queue_delay_us=10_000_001)),
                INVALID, "batching.max_queue_delay_us")
    await fails(stub.deploy("alpha_bull", executor=serving_pb2.EXECUTOR_KIND_TRITON), PRECONDITION, "executor",
                "Triton is not available")
    await stub.deploy("alpha_bull", session_id="dup-alpha")
    await fails(stub.deploy("alpha_bull", session_id="dup-alpha"), grpc.StatusCode.ALREADY_EXISTS, "session_id")
    gone = await stub.UndeploySession(serving_pb2.UndeploySessionRequest(session_id="dup-alpha"))
    assert gone.state == serving_pb2.SESSION_STATE_UNDEPLOYED
    again = await stub.deploy("alpha_bull", session_id="dup-alpha")  # an undeployed id may be reused
    assert again.state == serving_pb2.SESSION_STATE_READY
    assert {s.id for s in serving.manager.list()} - before == {"dup-alpha"}  # refused deploys left nothing


def _variant(trained, bump: float):
    """The same model with one weight changed: another artifact id."""
    other = copy.deepcopy(trained)
    with torch.no_grad():
        next(other.module.parameters()).view(-1)[0] += bump
    return other


async def test_unsigned_and_tampered_artifacts_are_refused_at_deploy(stub, models, publisher, mesh_settings):
    unsigned_saved, unsigned = await publisher.publish(_variant(models["alpha_bull"].trained, 0.5),
                                                       name="alpha_unsigned", signed=False)
    await fails(stub.deploy(unsigned.id), PRECONDITION, None, "signature verification failed")

    saved, tampered = await publisher.publish(_variant(models["alpha_bull"].trained, 0.25), name="alpha_tampered")
    weights = saved.folder / "model.safetensors"  # the copy in the local artifact cache the loader re-checks
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    await fails(stub.deploy(tampered.id), PRECONDITION, None, "sha256 mismatch", "model.safetensors")
    # the bad copy was removed; the next load fetches the verified bytes from the object store
    session = await stub.deploy(tampered.id, session_id="tampered-then-fetched")
    assert session.state == serving_pb2.SESSION_STATE_READY
