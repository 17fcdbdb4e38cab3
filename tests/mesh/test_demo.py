"""The demo's pieces: the write-once object store, the manifests, the models. (Byte-identical training across
processes, which makes the demo idempotent, is checked end to end in test_up.py.)"""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from safetensors.torch import load

from services.core.errors import FailedPrecondition, IntegrityError
from services.mesh.demo import models
from services.mesh.demo.seed import SEED, package
from services.mesh.demo.store import LocalObjectStore, local_root


@pytest.fixture(autouse=True)
def one_torch_thread():
    # As the demo trains: on a busy 2-core machine, OpenMP threads that spin-wait make tiny models crawl.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_store_is_content_addressed_and_write_once(tmp_path):
    store = LocalObjectStore(tmp_path)
    digest, created = store.put(b"weights")
    assert digest == hashlib.sha256(b"weights").hexdigest() and created
    assert store.path_of(digest).read_bytes() == b"weights"
    assert store.put(b"weights") == (digest, False)
    target = store.path_of(digest)
    os.chmod(target, 0o644)
    target.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="refusing to overwrite"):
        store.put(b"weights")
    assert target.read_bytes() == b"tampered"     # never overwritten, even to repair
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]   # no temp files left


def test_local_root_accepts_only_folders(tmp_path):
    assert local_root(str(tmp_path)) == tmp_path
    assert local_root(f"file://{tmp_path}") == tmp_path
    with pytest.raises(FailedPrecondition):
        local_root("s3://bucket/prefix")


def test_package_writes_weights_sidecar_and_a_rebuildable_manifest(tmp_path):
    torch.manual_seed(SEED)
    trained = models.alpha_model("bear", torch.Generator().manual_seed(SEED), 30, lambda n: None)
    packaged = package(trained, LocalObjectStore(tmp_path))
    files = {f["path"]: f for f in packaged.manifest["files"]}
    weights = (tmp_path / "sha256" / files["model.safetensors"]["sha256"]).read_bytes()
    sidecar = (tmp_path / "sha256" / files["model.safetensors.sha256"]["sha256"]).read_bytes()
    assert sidecar.decode().strip() == hashlib.sha256(weights).hexdigest() == files["model.safetensors"]["sha256"]
    assert files["model.safetensors"]["size"] == len(weights)
    meta = packaged.manifest["metadata"]
    assert meta["feature_names"] == models.data.FEATURES and set(meta["feature_stats"]) == set(models.data.FEATURES)
    # The architecture spec alone rebuilds the module that loads these weights.
    arch = meta["architecture"]
    stats = meta["feature_stats"]
    rebuilt = models.MLP(arch["layers"], torch.tensor([stats[f]["mean"] for f in meta["feature_names"]]),
                         torch.tensor([stats[f]["std"] for f in meta["feature_names"]]))
    rebuilt.load_state_dict(load(weights))
    x = torch.randn(4, len(models.data.FEATURES))
    assert torch.equal(rebuilt(x), trained.module(x))


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
