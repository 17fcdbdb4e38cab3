"""Compiled TorchScript (.pt) and AOTInductor (.pt2) outputs, built by the compiler's own code, served
behind the source artifact's backends: parity with the eager model for predictor, classifier and
forecaster, batches past a .pt2's compiled range, and in-process placement."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.errors import FailedPrecondition
from services.serving.interfaces import Classifier, Forecaster, Predictor
from services.serving.interfaces.backends import AotiRuntime, TorchScriptRuntime, compiled_backend, torch_backend
from services.serving.loading.placement import ExecutorPlacement, TritonTarget
from services.serving.loading.triton_entry import tensor_specs
from services.serving.triton.repository import ModelRepository
from tests.serving.backends.models import MAX_BATCH
from tests.serving.conftest import WINDOW

ROWS = [[0.01, 0.4, 0.2, 55.0], [-0.01, -0.3, 0.3, 41.0], [0.0, 0.05, 0.1, 50.0]]


def _pair(fixture, name, interface, target, compile_model):
    metadata, weights = fixture
    out = compile_model(name, target)
    compiled = compiled_backend(interface, artifact_id="compiled:x", metadata=metadata, model_path=out.model_file,
                                max_batch_size=out.kwargs["max_batch_size"])
    return compiled, torch_backend(interface, artifact_id="sha256:x", metadata=metadata, state_dict=weights)


async def test_torchscript_serves_predictor_classifier_and_forecaster(alpha_predictor, regime_classifier,
                                                                      price_forecaster, compile_model):
    compiled, eager = _pair(alpha_predictor, "alpha", "predictor", "pt", compile_model)
    assert isinstance(compiled, Predictor) and isinstance(compiled.runtime, TorchScriptRuntime)
    got, want = await compiled.predict(ROWS), await eager.predict(ROWS)
    np.testing.assert_allclose([p.value for p in got], [p.value for p in want], rtol=1e-5, atol=1e-6)

    compiled, eager = _pair(regime_classifier, "regime", "classifier", "pt", compile_model)
    assert isinstance(compiled, Classifier)
    got, want = await compiled.classify(ROWS), await eager.classify(ROWS)
    assert [c.label for c in got] == [c.label for c in want]
    for a, b in zip(got, want):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)

    compiled, eager = _pair(price_forecaster, "forecaster", "forecaster", "pt", compile_model)
    assert isinstance(compiled, Forecaster) and compiled.autoregressive
    history = [100 + 3 * np.sin(t / 5) for t in range(3 * WINDOW)]
    got, want = await compiled.forecast(history, 6), await eager.forecast(history, 6)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5)


async def test_an_aoti_package_serves_batches_past_its_compiled_range(alpha_predictor, compile_model):
    compiled, eager = _pair(alpha_predictor, "alpha", "predictor", "pt2", compile_model)
    assert isinstance(compiled.runtime, AotiRuntime) and compiled.runtime.max_batch_size == MAX_BATCH
    rows = np.random.default_rng(5).normal([0.0, 0.0, 0.15, 50.0], [0.01, 0.3, 0.05, 8.0], (3 * MAX_BATCH + 1, 4))
    got, want = await compiled.predict(rows.tolist()), await eager.predict(rows.tolist())
    assert len(got) == len(rows)
    np.testing.assert_allclose([p.value for p in got], [p.value for p in want], rtol=1e-4, atol=1e-5)


async def test_compiled_torch_outputs_run_in_process(alpha_predictor, compile_model, tmp_path):
    compiled, eager = _pair(alpha_predictor, "alpha", "predictor", "pt", compile_model)
    placement = ExecutorPlacement("auto", TritonTarget("127.0.0.1:1", ModelRepository(tmp_path)))
    assert placement.choose("auto", eager) == "triton"  # the eager model can go to Triton ...
    assert placement.choose("auto", compiled) == "in_process"  # ... its TorchScript compile cannot
    with pytest.raises(FailedPrecondition, match="TorchScript"):
        tensor_specs(compiled)


def test_unloadable_compiled_files_are_refused(alpha_predictor, tmp_path):
    metadata, _ = alpha_predictor
    for name in ("model.pt", "model.pt2", "model.plan"):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(FailedPrecondition) as refused:
            compiled_backend("predictor", artifact_id="compiled:x", metadata=metadata, model_path=tmp_path / name)
        assert refused.value.field == "model"
