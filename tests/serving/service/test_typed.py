"""Every typed interface end to end over gRPC (registry + serving, in-process executor), against the same
weights run locally; lineage of the deploy; concurrency (latency and throughput: bench/serving.py)."""

from __future__ import annotations

import asyncio

import pytest
import torch

from mlmesh.v1 import serving_pb2
from services.mesh.demo import data
from services.serving.interfaces.backends.factory import segmenter_backend
from services.serving.interfaces.calls import AnalyzeCall, ClassifyCall, ForecastCall, PredictCall, SegmentCall
from tests.serving.service.conftest import KINDS, SUBJECT

pytestmark = pytest.mark.asyncio(loop_scope="session")


def market_rows(n: int, seed: int = 0, regime: int | None = None) -> list[list[float]]:
    x, _ = data.market(n, torch.Generator().manual_seed(seed), regime=regime)
    return x.tolist()


def history(seed: int = 0, length: int = 48) -> list[float]:
    return data.price_series(1, length, torch.Generator().manual_seed(seed))[0].tolist()


def rows_msg(rows):
    return [serving_pb2.FeatureRow(values=r) for r in rows]


async def test_every_interface_is_served_end_to_end(stub, models, registry, publisher):
    alpha, regime = models["alpha_bull"], models["regime_classifier"]
    forecaster, news = models["price_forecaster"], models["news_sentiment"]

    # predictor, by alias; the interface comes from the artifact's metadata
    session = await stub.deploy("alpha_bull@prod", session_id="e2e-alpha")
    assert (session.state, session.executor) == (serving_pb2.SESSION_STATE_READY, serving_pb2.EXECUTOR_KIND_IN_PROCESS)
    assert session.interface == KINDS["predictor"] and session.artifact_id == alpha.artifact_id
    assert session.model == "alpha_bull@prod" and session.rule_pack == "ood_default" and session.replica
    rows = market_rows(5, regime=0)
    answer = await stub.Predict(serving_pb2.PredictRequest(session_id="e2e-alpha", rows=rows_msg(rows)))
    expected = await alpha.backend().direct(PredictCall(rows))
    assert [p.values[0] for p in answer.predictions] == pytest.approx([p.values[0] for p in expected], rel=1e-5)
    assert answer.meta.session_id == "e2e-alpha" and answer.meta.artifact_id == alpha.artifact_id
    assert answer.meta.batch_size == 5 and answer.meta.compute_ms > 0 and answer.meta.queue_ms >= 0

    # classifier, pinned by id
    await stub.deploy(regime.artifact_id, interface=KINDS["classifier"], session_id="e2e-regime")
    rows = market_rows(4, seed=1)
    answer = await stub.Classify(serving_pb2.ClassifyRequest(session_id="e2e-regime", rows=rows_msg(rows)))
    expected = await regime.backend().direct(ClassifyCall(rows))
    assert [c.label for c in answer.classifications] == [c.label for c in expected]
    assert [c.probability for c in answer.classifications] == pytest.approx([c.probability for c in expected])
    assert {s.label for s in answer.classifications[0].scores} == set(data.REGIMES)

    # forecaster: iteration-level batching by default (reported), horizons of different lengths at once
    session = await stub.deploy("price_forecaster", session_id="e2e-forecast")
    assert session.batching.HasField("iteration_level") and session.batching.iteration_level
    calls = [(history(seed), horizon) for seed, horizon in ((1, 3), (2, 9), (3, 5))]
    answers = await asyncio.gather(*(stub.Forecast(serving_pb2.ForecastRequest(
        session_id="e2e-forecast", history=h, horizon=n)) for h, n in calls))
    for (h, n), answer in zip(calls, answers):
        expected = await forecaster.backend().direct(ForecastCall(h, n))
        assert list(answer.forecast) == pytest.approx(expected.values, rel=1e-4) and len(answer.forecast) == n

    # segmenter: the builtin change-point model, no artifact
    session = await stub.deploy("builtin:changepoint", session_id="e2e-segment")
    assert session.artifact_id == "builtin:changepoint" and session.interface == KINDS["segmenter"]
    series = [0.0] * 30 + [5.0] * 30 + [1.0] * 30
    answer = await stub.Segment(serving_pb2.SegmentRequest(session_id="e2e-segment", series=series))
    expected = await segmenter_backend().direct(SegmentCall(series))
    assert list(answer.change_points) == list(expected.change_points) == [30, 60]
    assert [(s.start, s.end) for s in answer.segments] == [(0, 30), (30, 60), (60, 90)]

    # analyzer over texts
    await stub.deploy("news_sentiment@prod", interface=KINDS["analyzer"], session_id="e2e-news")
    texts = ["acme corp beats record profit growth", "globex plunges on fraud lawsuit warning"]
    answer = await stub.Analyze(serving_pb2.AnalyzeRequest(session_id="e2e-news", texts=texts))
    expected = await news.backend().direct(AnalyzeCall(texts))
    assert [a.label for a in answer.analyses] == [a.label for a in expected]
    assert [a.score for a in answer.analyses] == pytest.approx([a.score for a in expected])

    # lineage: the deploy is recorded by the registry with the caller as its actor
    graph = await publisher.client.get_lineage("session:e2e-alpha")
    deploys = [e for e in graph.events if e.operation == "deploy"]
    assert deploys and deploys[0].actor == SUBJECT and f"artifact:{alpha.artifact_id}" in deploys[0].inputs
    listed = await stub.ListSessions(serving_pb2.ListSessionsRequest(state=serving_pb2.SESSION_STATE_READY))
    assert {"e2e-alpha", "e2e-regime", "e2e-forecast", "e2e-segment", "e2e-news"} <= {s.id for s in listed.sessions}


async def test_named_features_map_through_the_feature_names(stub, models):
    await stub.deploy("alpha_bull", session_id="named-alpha")
    row = market_rows(1, seed=5, regime=0)[0]
    named = serving_pb2.FeatureRow(named=dict(zip(data.FEATURES, row)))
    by_name = await stub.Predict(serving_pb2.PredictRequest(session_id="named-alpha", rows=[named]))
    in_order = await stub.Predict(serving_pb2.PredictRequest(session_id="named-alpha", rows=rows_msg([row])))
    assert list(by_name.predictions[0].values) == list(in_order.predictions[0].values)


async def test_100_concurrent_predicts_each_get_their_own_answer(stub, models):
    await stub.deploy("alpha_bull", session_id="many-alpha")
    rows = market_rows(100, seed=7, regime=0)
    answers = await asyncio.gather(*(stub.Predict(serving_pb2.PredictRequest(
        session_id="many-alpha", rows=rows_msg([r]))) for r in rows))
    expected = await models["alpha_bull"].backend().direct(PredictCall(rows))
    got = [a.predictions[0].values[0] for a in answers]
    assert got == pytest.approx([p.values[0] for p in expected], rel=1e-5)
    # A model this small runs inline, each call at once when the engine is idle (tests/serving/test_engine.py
    # covers batch formation): every answer still names its session and the batch it ran in.
    assert all(a.meta.session_id == "many-alpha" and a.meta.batch_size >= 1 for a in answers)
