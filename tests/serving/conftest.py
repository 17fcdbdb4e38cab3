"""Small real models for the serving tests, shaped like the demo's (metadata: architecture, feature_names,
class_labels, feature_stats), trained for a few steps with fixed seeds; and test executors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from services.core.lineage import LineageBus
from services.core.models.architectures import MLP, HashedBagOfWords, LSTMForecaster, hash_texts
from services.core.settings import MLSettings
from services.serving.engine import InProcessExecutor
from services.serving.interfaces.backends import segmenter_backend

FEATURES = ["return_1d", "momentum", "volatility", "rsi_14"]
REGIMES = ["bull", "bear", "sideways"]
SENTIMENTS = ["negative", "neutral", "positive"]
WINDOW = 8


def _stats(x: torch.Tensor, names: list[str]) -> dict[str, dict[str, float]]:
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return {n: {"mean": round(float(m), 6), "std": round(float(s), 6)} for n, m, s in zip(names, mean, std)}


def _fit(module: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int = 30) -> None:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()
    module.eval()


def _market(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 3, (n,), generator=gen)
    centres = torch.tensor([[0.01, 0.5, 0.15, 60.0], [-0.01, -0.5, 0.3, 40.0], [0.0, 0.0, 0.1, 50.0]])
    x = centres[labels] + torch.randn(n, 4, generator=gen) * torch.tensor([0.01, 0.3, 0.05, 8.0])
    return x, labels


@pytest.fixture(scope="session")
def regime_classifier() -> tuple[dict, dict]:
    """(metadata, state_dict) of an MLP classifier over FEATURES."""
    torch.manual_seed(0)
    x, y = _market()
    stats = _stats(x, FEATURES)
    layers = [4, 16, 3]
    model = MLP(layers, torch.tensor([stats[n]["mean"] for n in FEATURES]),
                torch.tensor([stats[n]["std"] for n in FEATURES]))
    _fit(model, lambda: nn.functional.cross_entropy(model(x), y))
    metadata = {"interface": "classifier", "architecture": {"type": "mlp", "layers": layers},
                "feature_names": FEATURES, "class_labels": REGIMES, "feature_stats": stats}
    return metadata, model.state_dict()


@pytest.fixture(scope="session")
def alpha_predictor() -> tuple[dict, dict]:
    torch.manual_seed(1)
    x, _ = _market()
    y = (x @ torch.tensor([0.3, 0.02, -0.05, 0.0004])).unsqueeze(1)
    stats = _stats(x, FEATURES)
    layers = [4, 16, 1]
    model = MLP(layers, torch.tensor([stats[n]["mean"] for n in FEATURES]),
                torch.tensor([stats[n]["std"] for n in FEATURES]))
    _fit(model, lambda: nn.functional.mse_loss(model(x), y))
    metadata = {"interface": "predictor", "architecture": {"type": "mlp", "layers": layers},
                "feature_names": FEATURES, "feature_stats": stats}
    return metadata, model.state_dict()


@pytest.fixture(scope="session")
def price_forecaster() -> tuple[dict, dict]:
    torch.manual_seed(2)
    t = torch.arange(200, dtype=torch.float32)
    series = 100 + 3 * torch.sin(t / 5) + torch.randn(200, generator=torch.Generator().manual_seed(3)) * 0.2
    xs = torch.stack([series[i:i + WINDOW] for i in range(len(series) - WINDOW)])
    ys = series[WINDOW:].unsqueeze(1)
    mean, std = round(float(series.mean()), 6), round(float(series.std()), 6)
    model = LSTMForecaster(hidden=8, mean=mean, std=std)
    _fit(model, lambda: nn.functional.mse_loss((model(xs) - mean) / std, (ys - mean) / std))
    metadata = {"interface": "forecaster",
                "architecture": {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 8, "num_layers": 1,
                                 "window": WINDOW, "multi_step": "autoregressive"},
                "feature_names": ["value"], "feature_stats": {"value": {"mean": mean, "std": std}}}
    return metadata, model.state_dict()


HEADLINES = [("stocks rally on strong earnings", 2), ("shares plunge after weak guidance", 0),
             ("market flat ahead of fed meeting", 1), ("record profits lift the index", 2),
             ("losses deepen as demand collapses", 0), ("trading quiet in a calm session", 1)]


@pytest.fixture(scope="session")
def news_sentiment() -> tuple[dict, dict]:
    torch.manual_seed(4)
    texts, labels = zip(*(HEADLINES * 10))
    bags, y = hash_texts(list(texts), 64), torch.tensor(labels)
    model = HashedBagOfWords(64, 3)
    _fit(model, lambda: nn.functional.cross_entropy(model(bags), y), steps=60)
    counts = torch.tensor([[float(len(t.split()))] for t in texts])
    metadata = {"interface": "analyzer",
                "architecture": {"type": "hashed_bow_linear", "buckets": 64, "hash": "crc32",
                                 "tokenizer": "[a-z0-9']+", "lowercase": True},
                "class_labels": SENTIMENTS, "feature_stats": _stats(counts, ["token_count"]) | {}}
    metadata["feature_stats"]["token_count"]["std"] = 3.0  # allow longer texts than the six headlines
    return metadata, model.state_dict()


@pytest.fixture
def settings() -> MLSettings:
    return MLSettings(ml_ood_z_threshold=6.0, ml_serving_max_batch_size=32)


@pytest.fixture
def lineage() -> tuple[LineageBus, list]:
    bus, events = LineageBus(), []

    async def sink(event):
        events.append(event)

    bus.subscribe(sink)
    return bus, events


class GatedExecutor:
    """An async executor for engine tests: records every batch, optionally holds each one until released,
    and applies `fn` (default: y = 2x + 1 over input "x")."""

    def __init__(self, fn: Callable[[dict], dict] | None = None, *, gated: bool = False) -> None:
        self.fn = fn or (lambda b: {"y": b["x"] * 2 + 1})
        self.gated = gated
        self.batches: list[dict] = []
        self.closed = False
        self._release: asyncio.Event | None = None
        self.entered: asyncio.Event | None = None

    def _events(self) -> None:
        if self._release is None:
            self._release, self.entered = asyncio.Event(), asyncio.Event()

    async def wait_entered(self) -> None:
        self._events()
        await asyncio.wait_for(self.entered.wait(), 5)
        self.entered.clear()

    def release(self) -> None:
        self._events()
        self._release.set()

    async def execute(self, batch: dict) -> dict:
        self._events()
        self.batches.append(batch)
        self.entered.set()
        if self.gated:
            await self._release.wait()
            self._release.clear()
        return self.fn(batch)

    async def close(self) -> None:
        self.closed = True


class ThreadGate:
    """A batch function for the real InProcessExecutor that blocks its worker thread until released."""

    def __init__(self, fn: Callable[[dict], dict]) -> None:
        self.fn = fn
        self.go = threading.Event()
        self.calls: list[int] = []

    def __call__(self, batch: dict) -> dict:
        self.calls.append(len(next(iter(batch.values()))))
        self.go.wait(5)
        return self.fn(batch)

    async def entered(self, batches: int = 1) -> None:
        """Until `batches` batches have reached the function (each is counted before it waits)."""
        async with asyncio.timeout(5):
            while len(self.calls) < batches:
                await asyncio.sleep(0.005)


SERIES = [0.0] * 20 + [5.0] * 20   # what the change-point segmenter splits at 20


async def gated_segmenter(manager, session_id: str) -> ThreadGate:
    """The change-point segmenter deployed on a (served) SessionManager in the real worker thread, each
    batch held there until the test sets `gate.go`: a batch the model is still running, on demand."""
    backend = segmenter_backend()
    gate = ThreadGate(backend.run)
    await manager.deploy(backend, session_id=session_id, executor=InProcessExecutor(gate))
    return gate


def row(value: float, width: int = 4) -> np.ndarray:
    return np.full((1, width), value, dtype=np.float32)
