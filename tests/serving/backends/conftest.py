"""Fixtures of the backend tests: the tiny BERT snapshot folder, and the compiler's outputs of the small
torch models (tests/serving/conftest.py), each built once per run."""

from __future__ import annotations

import pytest

from tests.serving.backends.models import compiled_output, tiny_bert_snapshot


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return tiny_bert_snapshot(tmp_path_factory.mktemp("snapshot"))


@pytest.fixture(scope="session")
def compiled_root(tmp_path_factory):
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="session")
def compile_model(compiled_root, alpha_predictor, regime_classifier, price_forecaster):
    """compile_model(name, target) -> CompiledOutput, for "alpha", "regime" and "forecaster"."""
    models = {"alpha": alpha_predictor, "regime": regime_classifier, "forecaster": price_forecaster}

    def build(name: str, target: str):
        metadata, state_dict = models[name]
        return compiled_output(name, metadata, state_dict, target, compiled_root)

    return build
