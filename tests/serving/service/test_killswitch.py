"""The kill switch over gRPC: a halt during load answers nobody half, fails the queued with UNAVAILABLE,
refuses new calls, and resume serves again; the batch on the model is answered in full unless the halt says
cancel_running; HaltAll reports every session; WatchSessions sees it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from mlmesh.v1 import serving_pb2
from tests.serving.conftest import SERIES, gated_segmenter
from tests.serving.service.test_typed import history, market_rows, rows_msg

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_halt_during_load_never_answers_half(stub, models):
    batching = serving_pb2.BatchingConfig(max_batch_size=2)
    await stub.deploy("price_forecaster", session_id="halt-forecast", batching=batching)
    horizon = 200
    request = serving_pb2.ForecastRequest(session_id="halt-forecast", history=history(4), horizon=horizon)
    calls = [asyncio.ensure_future(stub.Forecast(request)) for _ in range(12)]
    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    halted = await stub.HaltSession(serving_pb2.HaltSessionRequest(session_id="halt-forecast", reason="drill"))
    assert halted.state == serving_pb2.SESSION_STATE_HALTED and halted.halt_reason == "drill"

    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert answered and refused  # some finished before the halt, the queued ones did not
    assert all(len(a.forecast) == horizon for a in answered)  # never a partial forecast
    for error in refused:
        assert isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
        assert "halted: drill" in error.details()

    with pytest.raises(grpc.aio.AioRpcError) as refused_new:
        await stub.Forecast(request)
    assert refused_new.value.code() == grpc.StatusCode.UNAVAILABLE

    resumed = await stub.ResumeSession(serving_pb2.ResumeSessionRequest(session_id="halt-forecast"))
    assert resumed.state == serving_pb2.SESSION_STATE_READY and not resumed.halt_reason
    assert len((await stub.Forecast(request)).forecast) == horizon


async def running_and_queued(stub, serving, session_id: str):
    """A Segment held on the model by a gate (the worker thread waits up to 5 s) and one queued behind it."""
    gate = await gated_segmenter(serving.manager, session_id)
    request = serving_pb2.SegmentRequest(session_id=session_id, series=SERIES)
    running = asyncio.ensure_future(stub.Segment(request))
    await gate.entered()
    queued = asyncio.ensure_future(stub.Segment(request))
    while serving.manager.get(session_id).loop.queue_depth < 1:
        await asyncio.sleep(0.005)
    return gate, running, queued


async def test_cancel_running_fails_the_batch_on_the_model_at_once(stub, serving):
    gate, running, queued = await running_and_queued(stub, serving, "halt-cancel")
    halted = await stub.HaltSession(serving_pb2.HaltSessionRequest(session_id="halt-cancel", reason="emergency",
                                                                    cancel_running=True))
    assert halted.state == serving_pb2.SESSION_STATE_HALTED
    for call in (running, queued):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call, 3)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "halted: emergency" in refused.value.details()
    assert not gate.go.is_set() and gate.calls == [1]   # answered while the model still ran; the queued never ran
    gate.go.set()


async def test_without_cancel_running_the_batch_on_the_model_is_answered_in_full(stub, serving):
    gate, running, queued = await running_and_queued(stub, serving, "halt-drain")
    await stub.HaltSession(serving_pb2.HaltSessionRequest(session_id="halt-drain", reason="drill"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(queued, 3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "halted: drill" in refused.value.details()
    await asyncio.sleep(0.1)
    assert not running.done()   # waits for the model
    gate.go.set()
    assert list((await running).change_points) == [20] and gate.calls == [1]


async def test_halt_all_stops_every_session_and_watch_sees_it(stub, models, serving):
    await stub.deploy("alpha_bull", session_id="all-alpha")
    await stub.deploy("builtin:changepoint", session_id="all-segment")
    watch = stub.WatchSessions(serving_pb2.WatchSessionsRequest(interval_s=0.05))
    first = await watch.read()
    assert {s.id: s.state for s in first.sessions}["all-alpha"] == serving_pb2.SESSION_STATE_READY

    result = await stub.HaltAll(serving_pb2.HaltAllRequest(reason="market closed"))
    live = {s.id for s in serving.manager.list() if s.state.value != "undeployed"}
    assert {r.session_id for r in result.results} == live and result.halted == len(live)
    assert all(r.halted and not r.error and r.replica == serving.servicer.replica for r in result.results)

    while True:  # the watcher is woken by the state change
        update = await asyncio.wait_for(watch.read(), 5)
        states = {s.id: s for s in update.sessions}
        if states["all-alpha"].state == serving_pb2.SESSION_STATE_HALTED:
            break
    assert states["all-segment"].halt_reason == "market closed"
    watch.cancel()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Predict(serving_pb2.PredictRequest(session_id="all-alpha", rows=rows_msg(market_rows(1))))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "market closed" in refused.value.details()
    halted = await stub.ListSessions(serving_pb2.ListSessionsRequest(state=serving_pb2.SESSION_STATE_HALTED))
    assert {"all-alpha", "all-segment"} <= {s.id for s in halted.sessions}

    for session_id in live:  # the other tests of this session share the service: serve again
        await stub.ResumeSession(serving_pb2.ResumeSessionRequest(session_id=session_id))
    assert (await stub.Predict(serving_pb2.PredictRequest(session_id="all-alpha", rows=rows_msg(
        market_rows(1, regime=0))))).predictions


async def test_priority_orders_the_queue_and_a_cancelled_call_leaves_it(stub, serving, models):
    batching = serving_pb2.BatchingConfig(max_batch_size=1, iteration_level=False)
    await stub.deploy("price_forecaster", session_id="prio-forecast", batching=batching)

    def forecast(horizon: int, priority: int = 0):
        return stub.Forecast(serving_pb2.ForecastRequest(
            session_id="prio-forecast", history=history(6), horizon=horizon,
            options=serving_pb2.RequestOptions(priority=priority)))

    session = serving.manager.get("prio-forecast")
    running = asyncio.ensure_future(forecast(400))
    while session.loop.running == 0:
        await asyncio.sleep(0.005)
    finished: list[str] = []

    async def tagged(name: str, call) -> None:
        await call
        finished.append(name)

    low = [asyncio.ensure_future(tagged(f"low{i}", forecast(20))) for i in range(3)]
    await asyncio.sleep(0.05)
    cancelled = asyncio.ensure_future(forecast(20))
    await asyncio.sleep(0.05)
    high = asyncio.ensure_future(tagged("high", forecast(20, priority=5)))
    while session.loop.queue_depth < 5:
        await asyncio.sleep(0.005)
    cancelled.cancel()  # the client goes away while its call waits
    await asyncio.gather(running, high, *low)
    assert finished[0] == "high" and finished[1:] == ["low0", "low1", "low2"]
    assert session.loop.stats.requests_cancelled == 1
