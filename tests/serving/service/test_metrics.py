"""Serving's /metrics, scraped over HTTP from a serving app with metrics on a free port: the engine series
(queue depth, batch sizes, busy ratio, outcomes, rule trips, breaker, halts), the cache and the RPC series
move under a small load."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import pytest_asyncio

from mlmesh.v1 import serving_pb2
from services.core.auth.policy import ALL_SCOPES
from services.core.settings import AuthSettings, ObservabilitySettings, ServerSettings
from services.serving.server import ServingSettings, build_serving
from tests.scrape import scrape
from tests.serving.service.conftest import SUBJECT, Stub
from tests.serving.service.test_typed import history, market_rows, rows_msg

pytestmark = pytest.mark.asyncio(loop_scope="session")
PREDICT, FORECAST = "mlmesh.v1.Serving/Predict", "mlmesh.v1.Serving/Forecast"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def metered(mesh_settings, registry, models, issuer):
    """A serving app of its own with /metrics on a free port, and a stub for it."""
    app = await build_serving(mesh_settings, ServerSettings(), AuthSettings(),
                              serving=ServingSettings(executor="in_process", start_triton=False),
                              registry_address=registry.address,
                              observability=ObservabilitySettings(metrics_port=0))
    address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield app, Stub(channel, issuer.mint(SUBJECT, "serving", ALL_SCOPES))
    finally:
        await app.stop(0)


async def _scrape(app):
    return await asyncio.to_thread(scrape, app.host.metrics.url)


async def test_predict_load_fills_the_batch_histogram_and_counts_answers(metered):
    app, stub = metered
    await stub.deploy("alpha_bull", session_id="m-alpha", batching=serving_pb2.BatchingConfig(max_batch_size=8))
    before = await _scrape(app)
    assert before.value("mlmesh_serving_batch_size_count", session="m-alpha") == 0
    assert before.value("mlmesh_serving_session_info", session="m-alpha", interface="predictor", state="ready") == 1

    request = serving_pb2.PredictRequest(session_id="m-alpha", rows=rows_msg(market_rows(1, regime=0)))
    await asyncio.gather(*(stub.Predict(request) for _ in range(40)))
    after = await _scrape(app)
    batches = after.value("mlmesh_serving_batch_size_count", session="m-alpha")
    assert 1 <= batches <= 40
    assert after.value("mlmesh_serving_batch_size_sum", session="m-alpha") == 40  # one row per request
    assert after.bucket("mlmesh_serving_batch_size", "+Inf", session="m-alpha") == batches
    assert after.bucket("mlmesh_serving_batch_size", "8", session="m-alpha") == batches  # never over max
    assert after.value("mlmesh_serving_request_outcomes_total", session="m-alpha", outcome="answered") == 40
    assert after.value("mlmesh_serving_requests_total", session="m-alpha") == 40
    assert after.value("mlmesh_serving_compute_seconds_total", session="m-alpha") > 0
    assert 0 < after.value("mlmesh_serving_executor_busy_ratio", session="m-alpha") <= 1
    assert after.value("mlmesh_rpc_requests_total", method=PREDICT, code="OK") == 40
    assert after.value("mlmesh_rpc_duration_seconds_count", method=PREDICT) == 40
    # the deploy loaded the model through the cache: a miss, and its bytes are held
    assert after.value("mlmesh_cache_misses_total") >= 1 and after.value("mlmesh_cache_bytes") > 0


async def test_rule_trips_and_errors_by_status_code(metered):
    app, stub = metered
    await stub.deploy("alpha_bull", session_id="m-rules")
    far = market_rows(1, regime=0)
    far[0][5] = 10_000.0  # rsi_14, far outside its training statistics
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Predict(serving_pb2.PredictRequest(session_id="m-rules", rows=rows_msg(far)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    samples = await _scrape(app)
    assert samples.value("mlmesh_serving_rule_trips_total", session="m-rules", rule="OODGuard") == 1
    assert samples.value("mlmesh_serving_request_outcomes_total", session="m-rules", outcome="refused") == 1
    assert samples.value("mlmesh_rpc_requests_total", method=PREDICT, code="INVALID_ARGUMENT") >= 1
    assert samples.value("mlmesh_serving_breaker_state", session="m-rules", state="closed") == 1
    assert samples.value("mlmesh_serving_breaker_state", session="m-rules", state="open") == 0


async def test_queue_depth_rises_under_load_and_a_halt_is_counted(metered):
    app, stub = metered
    await stub.deploy("price_forecaster", session_id="m-forecast",
                      batching=serving_pb2.BatchingConfig(max_batch_size=2))
    request = serving_pb2.ForecastRequest(session_id="m-forecast", history=history(4), horizon=300)
    calls = [asyncio.ensure_future(stub.Forecast(request)) for _ in range(16)]
    try:
        depth = 0.0
        for _ in range(50):  # two sequences run at a time, 300 steps each: the rest wait in the queue
            depth = (await _scrape(app)).value("mlmesh_serving_queue_depth", session="m-forecast")
            if depth > 0:
                break
            await asyncio.sleep(0.01)
        assert depth > 0
        await stub.HaltSession(serving_pb2.HaltSessionRequest(session_id="m-forecast", reason="metrics drill"))
    finally:
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    unavailable = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)
                   and o.code() == grpc.StatusCode.UNAVAILABLE]
    assert unavailable
    samples = await _scrape(app)
    assert samples.value("mlmesh_serving_queue_depth", session="m-forecast") == 0
    assert samples.value("mlmesh_serving_halts_total", session="m-forecast") == 1
    assert samples.value("mlmesh_serving_session_info", session="m-forecast", state="halted") == 1
    assert samples.value("mlmesh_serving_sessions", state="halted") >= 1
    # each UNAVAILABLE was queued, then failed by the halt, or (arriving after it) refused at the door
    failed, refused = (samples.value("mlmesh_serving_request_outcomes_total", session="m-forecast", outcome=o)
                       for o in ("failed", "refused"))
    assert failed >= 1 and failed + refused == len(unavailable)
    assert samples.value("mlmesh_rpc_requests_total", method=FORECAST, code="UNAVAILABLE") == len(unavailable)
