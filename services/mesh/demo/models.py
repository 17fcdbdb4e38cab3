"""The demo's six models: their torch modules, how each is trained, and the metadata that describes it.

The modules are services.core.models.architectures, so serving and the compiler rebuild each model
from its manifest metadata alone (`architecture` names the layout and every size). Inputs are
standardized inside the module (buffers `input_mean` / `input_std`), so the weights work on raw
features as given, also after compilation to ONNX. `training_stats` (mean/std per feature, in
`feature_names` order) is what the OOD guard compares requests against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from services.core.models.architectures import MLP, TOKEN, HashedBagOfWords, LSTMForecaster, hash_texts
from services.mesh.demo import data

TEXT_BUCKETS = 512
WINDOW = 32


@dataclass
class Trained:
    name: str
    module: nn.Module
    metadata: dict[str, Any]


Progress = Callable[[int], None]   # called with the number of steps just done


def _fit(module: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int, lr: float, progress: Progress) -> float:
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        progress(1)
    return float(loss.detach())


def _stats(x: torch.Tensor) -> dict[str, list[float]]:
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(v), 6) for v in std]}


def _buffers(stats: dict[str, list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    # The module standardizes with the same rounded numbers the metadata records.
    return torch.tensor(stats["mean"]), torch.tensor(stats["std"])


def regime_classifier(gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    x, y = data.market(3000, gen)
    stats = _stats(x)
    layers = [len(data.FEATURES), 32, 32, len(data.REGIMES)]
    model = MLP(layers, *_buffers(stats))
    loss = _fit(model, lambda: nn.functional.cross_entropy(model(x), y), steps, 1e-2, progress)
    accuracy = float((model(x).argmax(1) == y).float().mean())
    return Trained("regime_classifier", model, {
        "interface": "classifier", "task": "classification",
        "architecture": {"type": "mlp", "layers": layers, "activation": "relu", "output": "logits",
                         "input_standardized": True},
        "feature_names": data.FEATURES, "class_labels": data.REGIMES, "training_stats": stats,
        "training": {"samples": len(y), "steps": steps, "loss": round(loss, 6), "accuracy": round(accuracy, 4)},
    })


def alpha_model(regime: str, gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    index = data.REGIMES.index(regime)
    x, _ = data.market(2000, gen, regime=index)
    y = data.alpha_target(x, index, gen)
    stats = _stats(x)
    layers = [len(data.FEATURES), 32, 16, 1]
    model = MLP(layers, *_buffers(stats))
    scale = float(y.std())   # regress in units of the target's spread so one learning rate fits all
    loss = _fit(model, lambda: nn.functional.mse_loss(model(x), y / scale), steps, 1e-2, progress)
    with torch.no_grad():
        model.net[-1].weight.mul_(scale)
        model.net[-1].bias.mul_(scale)
    return Trained(f"alpha_{regime}", model, {
        "interface": "predictor", "task": "regression", "regime": regime,
        "architecture": {"type": "mlp", "layers": layers, "activation": "relu", "output": "value",
                         "input_standardized": True},
        "feature_names": data.FEATURES, "target": "forward_return_5d", "training_stats": stats,
        "training": {"samples": len(y), "steps": steps, "loss": round(loss, 6)},
    })


def price_forecaster(gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    series = data.price_series(24, 160, gen)
    x, y = data.windows(series, WINDOW)
    mean, std = round(float(series.mean()), 6), round(float(series.std()), 6)
    model = LSTMForecaster(hidden=24, mean=mean, std=std)
    batch = 128

    def loss_fn() -> torch.Tensor:
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        return nn.functional.mse_loss((model(x[idx]) - mean) / std, (y[idx] - mean) / std)

    loss = _fit(model, loss_fn, steps, 1e-2, progress)
    return Trained("price_forecaster", model, {
        "interface": "forecaster", "task": "forecasting",
        "architecture": {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 24, "num_layers": 1,
                         "window": WINDOW, "output": "next_value", "multi_step": "autoregressive"},
        "feature_names": ["value"], "training_stats": {"mean": [mean], "std": [std]},
        "training": {"samples": int(x.shape[0]), "steps": steps, "batch_size": batch, "loss": round(loss, 6)},
    })


def news_sentiment(gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    texts, y = data.headlines(1500, gen)
    bags = hash_texts(texts, TEXT_BUCKETS)
    model = HashedBagOfWords(TEXT_BUCKETS, len(data.SENTIMENTS))
    loss = _fit(model, lambda: nn.functional.cross_entropy(model(bags), y), steps, 5e-2, progress)
    accuracy = float((model(bags).argmax(1) == y).float().mean())
    lengths = torch.tensor([len(TOKEN.findall(t.lower())) for t in texts], dtype=torch.float32)
    return Trained("news_sentiment", model, {
        "interface": "analyzer", "task": "text_classification",
        "architecture": {"type": "hashed_bow_linear", "buckets": TEXT_BUCKETS, "classes": len(data.SENTIMENTS),
                         "hash": "crc32",
                         "tokenizer": TOKEN.pattern, "lowercase": True, "weighting": "l1_term_frequency",
                         "output": "logits"},
        "class_labels": data.SENTIMENTS, "text_stats": {"token_count": _stats(lengths.unsqueeze(1))},
        "training": {"samples": len(y), "steps": steps, "loss": round(loss, 6), "accuracy": round(accuracy, 4)},
    })


@dataclass(frozen=True)
class Recipe:
    name: str
    steps: int
    train: Callable[[torch.Generator, int, Progress], Trained]


RECIPES = [
    Recipe("regime_classifier", 200, regime_classifier),
    *(Recipe(f"alpha_{r}", 200, lambda g, s, p, r=r: alpha_model(r, g, s, p)) for r in data.REGIMES),
    Recipe("price_forecaster", 150, price_forecaster),
    Recipe("news_sentiment", 150, news_sentiment),
]
