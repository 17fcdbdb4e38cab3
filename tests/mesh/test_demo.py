"""The demo's pieces: models saved as every service saves them, and models that learn. (Byte-identical training across
processes, which makes the demo idempotent, is checked end to end in test_up.py.)"""

from __future__ import annotations

import time

import pytest
import torch

from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.lineage import LineageBus
from services.core.models.architectures import load_module
from services.core.settings import MeshSettings
from services.mesh.demo import models
from services.mesh.demo.seed import SEED, save


@pytest.fixture(autouse=True)
def one_torch_thread():
    # As the demo trains: on a busy 2-core machine, OpenMP threads that spin-wait make tiny models crawl.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


async def test_save_writes_signed_weights_and_a_rebuildable_manifest(tmp_path):
    torch.manual_seed(SEED)
    trained = models.alpha_model("bear", torch.Generator().manual_seed(SEED), 30, lambda n: None)
    kit = build_artifact_toolkit(MeshSettings(home=tmp_path), LineageBus(), service="test",
                                 write_scope=REGISTRY_WRITE, read_scope=REGISTRY_WRITE)
    token = set_principal(Principal("test", frozenset(ALL_SCOPES), "registry", "t", time.time() + 60))
    try:
        saved = await save(trained, kit)
        loaded = await kit.loader.load(saved.manifest, saved.signature, expected_id=saved.artifact_id)
    finally:
        reset_principal(token)
    files = {f.path: f for f in saved.manifest.files}
    assert set(files) == {"model.safetensors", "model.safetensors.sha256"}
    meta = saved.manifest.metadata
    assert meta["feature_names"] == models.data.FEATURES and len(meta["training_stats"]["mean"]) == len(models.data.FEATURES)
    assert meta["architecture"]["type"] == "mlp" and meta["name"] == "alpha_bear"
    # The architecture spec alone rebuilds the module that loads these weights, and it computes the same.
    rebuilt = load_module(meta["architecture"], loaded.state_dict)
    x = torch.randn(4, len(models.data.FEATURES))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained.module(x))
    # Training statistics are what the module standardises with.
    assert torch.allclose(rebuilt.input_mean, torch.tensor(meta["training_stats"]["mean"]))


def test_models_learn_something():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    classifier = models.regime_classifier(gen, 120, lambda n: None)
    assert classifier.metadata["training"]["accuracy"] > 0.8
    sentiment = models.news_sentiment(gen, 100, lambda n: None)
    assert sentiment.metadata["training"]["accuracy"] > 0.8
    forecaster = models.price_forecaster(gen, 40, lambda n: None)
    history = torch.linspace(95, 105, models.WINDOW).unsqueeze(0)
    with torch.no_grad():
        assert 80 < float(forecaster.module(history)) < 120
