"""Every interface on a real backend: torch MLP predictor and classifier, LSTM forecaster, hashed
bag-of-words analyzer and text classifier, an ONNX Runtime predictor, the change-point segmenter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.core.errors import InvalidArgument
from services.core.models.architectures import hash_texts, load_module
from services.serving.interfaces import (
    Analyzer,
    Classifier,
    Forecaster,
    Predictor,
    Segmenter,
    interface_registry,
)
from services.serving.interfaces.backends import (
    binary_segmentation,
    hashed_bags,
    onnx_backend,
    segmenter_backend,
    torch_backend,
)
from services.serving.interfaces.backends.features import feature_matrix
from tests.serving.conftest import FEATURES, REGIMES, WINDOW


def test_the_five_interfaces_are_registered():
    registry = interface_registry()
    assert registry.names("interface") == ["analyzer", "classifier", "forecaster", "predictor", "segmenter"]
    assert registry.get("interface", "predictor") is Predictor


async def test_torch_predictor_matches_the_module_and_maps_named_features(alpha_predictor):
    metadata, weights = alpha_predictor
    backend = torch_backend("predictor", artifact_id="sha256:a", metadata=metadata, state_dict=weights)
    assert isinstance(backend, Predictor)
    rows = [[0.01, 0.4, 0.2, 55.0], [-0.01, -0.3, 0.3, 41.0]]
    expected = load_module(metadata["architecture"], weights)(torch.tensor(rows)).detach().numpy()
    got = await backend.predict(rows)
    np.testing.assert_allclose([p.value for p in got], expected[:, 0], rtol=1e-6)
    named = await backend.predict({name: value for name, value in zip(reversed(FEATURES), reversed(rows[0]))})
    assert named[0].value == pytest.approx(got[0].value)
    with pytest.raises(InvalidArgument, match="unknown feature 'mood'") as err:
        await backend.predict({**dict(zip(FEATURES, rows[0])), "mood": 1.0})
    assert err.value.field == "rows[0].mood"
    with pytest.raises(InvalidArgument, match="missing feature 'rsi_14'"):
        await backend.predict(dict(zip(FEATURES[:3], rows[0])))
    with pytest.raises(InvalidArgument, match="same number of values"):
        await backend.predict([[1.0, 2.0, 3.0, 4.0], [1.0]])
    with pytest.raises(InvalidArgument):
        await backend.predict(["a", "b", "c", "d"])


async def test_torch_classifier_gives_labels_and_probabilities(regime_classifier):
    metadata, weights = regime_classifier
    backend = torch_backend("classifier", artifact_id="sha256:c", metadata=metadata, state_dict=weights)
    assert isinstance(backend, Classifier)
    bull, bear = [0.01, 0.5, 0.15, 60.0], [-0.01, -0.5, 0.3, 40.0]
    results = await backend.classify([bull, bear])
    assert [r.label for r in results] == ["bull", "bear"]
    for r in results:
        assert set(r.scores) == set(REGIMES) and sum(r.scores.values()) == pytest.approx(1.0)
        assert r.probability == max(r.scores.values())
    with pytest.raises(InvalidArgument, match="feature rows, not texts"):
        await backend.classify(["a headline"])


async def test_lstm_forecaster_iterates_its_window(price_forecaster):
    metadata, weights = price_forecaster
    backend = torch_backend("forecaster", artifact_id="sha256:f", metadata=metadata, state_dict=weights)
    assert isinstance(backend, Forecaster)
    history = [100 + 3 * np.sin(t / 5) for t in range(20)]
    forecast = await backend.forecast(history, 4)
    module = load_module(metadata["architecture"], weights)
    window, expected = torch.tensor([history[-WINDOW:]], dtype=torch.float32), []
    for _ in range(4):
        value = module(window)
        expected.append(float(value.detach()))
        window = torch.cat([window[:, 1:], value], dim=1)
    np.testing.assert_allclose(forecast.values, expected, rtol=1e-5)
    assert 90 < forecast.values[0] < 110
    with pytest.raises(InvalidArgument, match=f"at least {WINDOW} values") as err:
        await backend.forecast(history[:3], 2)
    assert err.value.field == "history"
    with pytest.raises(InvalidArgument) as err:
        await backend.forecast(history, 0)
    assert err.value.field == "horizon"


async def test_hashed_bag_of_words_analyzer_and_text_classifier(news_sentiment):
    metadata, weights = news_sentiment
    texts = ["Stocks rally on strong earnings!", "shares plunge after weak guidance", ""]
    bags, counts = hashed_bags(texts, 64)
    np.testing.assert_allclose(bags, hash_texts(texts, 64).numpy(), atol=1e-6)  # the training features
    assert counts.tolist() == [5, 5, 0]
    analyzer = torch_backend("analyzer", artifact_id="sha256:n", metadata=metadata, state_dict=weights)
    assert isinstance(analyzer, Analyzer)
    good, bad, _ = await analyzer.analyze(texts)
    assert good.label == "positive" and good.score > 0
    assert bad.label == "negative" and bad.score < 0
    assert -1 <= bad.score <= 1 and sum(good.scores.values()) == pytest.approx(1.0)
    classifier = torch_backend("classifier", artifact_id="sha256:n", metadata=metadata, state_dict=weights)
    assert [c.label for c in await classifier.classify(texts[:2])] == ["positive", "negative"]
    with pytest.raises(InvalidArgument, match="cannot serve interface 'forecaster'"):
        torch_backend("forecaster", artifact_id="sha256:n", metadata=metadata, state_dict=weights)


@pytest.fixture(scope="module")
def exported_mlp(tmp_path_factory, alpha_predictor_module):
    metadata, module = alpha_predictor_module
    path = tmp_path_factory.mktemp("onnx") / "alpha.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(module, (torch.randn(4, len(FEATURES)),), str(path), dynamo=True,
                      dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    return metadata, module, path


@pytest.fixture(scope="module")
def alpha_predictor_module(alpha_predictor):
    metadata, weights = alpha_predictor
    return metadata, load_module(metadata["architecture"], weights)


async def test_onnx_runtime_predictor_matches_eager_torch(exported_mlp):
    metadata, module, path = exported_mlp
    backend = onnx_backend("predictor", artifact_id="compiled:sha256:x", metadata=metadata, model_path=path, threads=1)
    assert not backend.uses_torch
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(7, 4)) * [0.01, 0.3, 0.05, 8] + [0, 0, 0.2, 50]).astype(np.float32)
    got = await backend.predict(rows.tolist())
    np.testing.assert_allclose([p.value for p in got], module(torch.from_numpy(rows)).detach().numpy()[:, 0],
                               atol=1e-5)
    with pytest.raises(InvalidArgument, match="not a loadable ONNX model"):
        onnx_backend("predictor", artifact_id="x", metadata=metadata, model_path=path.with_suffix(".missing"))


async def test_change_point_segmenter_finds_mean_shifts_deterministically():
    rng = np.random.default_rng(5)
    series = np.concatenate([rng.normal(0, 0.5, 60), rng.normal(4, 0.5, 40), rng.normal(-2, 0.5, 50)])
    segmenter = segmenter_backend()
    assert isinstance(segmenter, Segmenter)
    result = await segmenter.segment(series.tolist())
    assert result.change_points == (60, 100)
    assert [(s.start, s.end) for s in result.segments] == [(0, 60), (60, 100), (100, 150)]
    assert [round(s.mean) for s in result.segments] == [0, 4, -2]
    assert (await segmenter.segment(series.tolist())) == result
    assert binary_segmentation(rng.normal(0, 1, 300)) == []  # noise alone has no change points
    assert binary_segmentation(np.array([1.0, 1, 1, 1, 5, 5, 5, 5])) == [4]
    flat = await segmenter.segment([2.0] * 10)
    assert flat.change_points == () and flat.segments[0].stddev == 0


@pytest.mark.parametrize("features, rows", [
    (np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), [[1.0, 2.0], [3.0, 4.0]]),   # a KServe tensor
    (np.array([1, 2]), [[1.0, 2.0]]),                                                  # one row
    ([[1, 2], [3, 4]], [[1.0, 2.0], [3.0, 4.0]]),
    ([1.5, 2], [[1.5, 2.0]]),
    ({"b": 2, "a": 1}, [[1.0, 2.0]]),
])
def test_feature_matrix_takes_rows_of_every_kind(features, rows):
    matrix = feature_matrix(features, ("a", "b"))
    assert matrix.dtype == np.float64 and matrix.tolist() == rows


@pytest.mark.parametrize("features, message", [
    (np.array([["a", "b"]]), "list of numbers"), (np.zeros((1, 2, 2)), "list of numbers"),
    (np.zeros((0, 2)), "no rows"), ([[1, 2], [3]], "same number of values"), ("1,2", "expected a row"),
])
def test_feature_matrix_refuses_what_is_not_rows_naming_the_field(features, message):
    with pytest.raises(InvalidArgument, match=message) as refused:
        feature_matrix(features, ("a", "b"), field="rows")
    assert refused.value.field == "rows"
