"""The five interfaces client-side: the same call through an in-process backend and through a Remote*
against a real serving service gives equal results; options travel; errors come back as domain errors."""

from __future__ import annotations

import pytest

from services.core.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from services.core.grpc.client import connect
from services.core.auth.policy import ALL_SCOPES
from services.serving.client import (
    RemoteAnalyzer,
    RemoteClassifier,
    RemoteForecaster,
    RemotePredictor,
    RemoteSegmenter,
    deployed_interface,
    remote_interface,
)
from services.serving.interfaces import Analyzer, CallOptions, Classifier, Forecaster, Predictor, Segmenter
from services.serving.interfaces.backends import segmenter_backend, torch_backend
from services.serving.loading.metadata import serving_metadata
from tests.serving.conftest import FEATURES, WINDOW, gated_segmenter
from tests.serving.service.conftest import SUBJECT

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROWS = [[0.01, 0.4, 0.2, 55.0], [-0.01, -0.3, 0.3, 41.0]]
HISTORY = [100 + 3 * ((t % 10) / 10) for t in range(3 * WINDOW)]
SERIES = [0.0] * 20 + [5.0] * 20 + [1.0] * 20


def local(fixture, interface):
    metadata, weights = fixture
    return torch_backend(interface, artifact_id="sha256:local", metadata=serving_metadata(metadata),
                         state_dict=weights)


async def test_each_interface_answers_as_the_in_process_backend(client, serving, issuer, published, alpha_predictor,
                                                                regime_classifier, price_forecaster, news_sentiment):
    for name, interface in (("alpha", "predictor"), ("regime", "classifier"), ("forecaster", "forecaster"),
                            ("news", "analyzer")):
        await client.deploy(published[name], interface, session_id=f"remote-{name}", executor="in_process")
    await client.deploy("builtin:changepoint", "segmenter", session_id="remote-segment")

    predictor = RemotePredictor("remote-alpha", client)
    assert isinstance(predictor, Predictor) and predictor.session_id == "remote-alpha"
    assert await predictor.predict(ROWS) == await local(alpha_predictor, "predictor").predict(ROWS)
    named = dict(zip(FEATURES, ROWS[0]))
    assert await predictor.predict(named) == await local(alpha_predictor, "predictor").predict(named)

    classifier = remote_interface("classifier", "remote-regime", client)
    assert isinstance(classifier, RemoteClassifier) and isinstance(classifier, Classifier)
    assert await classifier.classify(ROWS) == await local(regime_classifier, "classifier").classify(ROWS)

    forecaster = RemoteForecaster("remote-forecaster", client)
    assert isinstance(forecaster, Forecaster)
    remote_forecast = await forecaster.forecast(HISTORY, 5, options=CallOptions(priority=3, request_id="r-1"))
    local_forecast = await local(price_forecaster, "forecaster").forecast(HISTORY, 5)
    assert remote_forecast.values == pytest.approx(local_forecast.values, rel=1e-6)

    analyzer = RemoteAnalyzer("remote-news", client)
    texts = ["stocks rally on strong earnings", "shares plunge after weak guidance"]
    assert isinstance(analyzer, Analyzer)
    assert await analyzer.analyze(texts) == await local(news_sentiment, "analyzer").analyze(texts)

    # a channel made by connect() (its calls carry the mesh token) works as well as a client
    channel = connect(serving.address, "serving", issuer, SUBJECT, ALL_SCOPES)
    try:
        segmenter = RemoteSegmenter("remote-segment", channel)
        assert isinstance(segmenter, Segmenter)
        assert await segmenter.segment(SERIES) == await segmenter_backend().segment(SERIES)
    finally:
        await channel.close()


async def test_errors_come_back_as_domain_errors(client, serving, published):
    await client.deploy(published["alpha"], "predictor", session_id="remote-errors", executor="in_process")
    predictor = RemotePredictor("remote-errors", client)
    with pytest.raises(InvalidArgument, match="unknown feature 'mood'") as bad:
        await predictor.predict({**dict(zip(FEATURES, ROWS[0])), "mood": 1.0})
    assert bad.value.field == "rows[0].mood"
    with pytest.raises(InvalidArgument) as unsendable:
        await predictor.predict([["a", "b"]])
    assert unsendable.value.field == "rows"
    gate = await gated_segmenter(serving.manager, "remote-held")
    try:  # the model holds the batch past the call's deadline (a 10 µs one can beat gRPC's ms timers)
        with pytest.raises(DeadlineExceeded):
            await RemoteSegmenter("remote-held", client).segment(SERIES, options=CallOptions(timeout_s=0.05))
    finally:
        gate.go.set()
    with pytest.raises(NotFound):
        await RemotePredictor("remote-nobody", client).predict(ROWS)

    await serving.manager.halt("remote-errors", "drill")
    with pytest.raises(Unavailable, match="halted: drill"):
        await predictor.predict(ROWS)
    await serving.manager.resume("remote-errors")
    assert len(await predictor.predict(ROWS)) == 2


async def test_remote_interface_by_kind_and_find_or_deploy(client, published, regime_classifier):
    with pytest.raises(InvalidArgument) as unknown:
        remote_interface("oracle", "s", client)
    assert unknown.value.field == "interface"
    first = await deployed_interface(client, published["regime"], "classifier")
    again = await deployed_interface(client, published["regime"], "classifier")
    assert isinstance(first, RemoteClassifier) and first.session_id == again.session_id  # reused, not redeployed
    assert await first.classify(ROWS) == await local(regime_classifier, "classifier").classify(ROWS)
