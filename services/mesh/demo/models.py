"""The demo's six models: their torch modules, how each is trained, and the metadata that describes it.

Nothing imports services.mesh, so a loader elsewhere rebuilds a model from its manifest metadata alone:
`architecture` names the module layout and every size, and the state_dict keys follow it exactly.
Inputs are standardized inside the module (buffers `input_mean` / `input_std`), so the weights work on
raw features as given, also after compilation to ONNX.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from services.mesh.demo import data

TOKEN = re.compile(r"[a-z0-9']+")
TEXT_BUCKETS = 512
WINDOW = 32


class MLP(nn.Module):
    """state_dict: input_mean, input_std, net.{0,2,4,...}.weight/bias (Linear, ReLU between)."""

    def __init__(self, layers: list[int], mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("input_mean", mean.clone().float())
        self.register_buffer("input_std", std.clone().float())
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(layers) - 2:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.input_mean) / self.input_std)


class LSTMForecaster(nn.Module):
    """One-step forecaster: (batch, window) history -> (batch, 1) next value; horizons are iterated.

    state_dict: series_mean, series_std, lstm.{weight,bias}_{ih,hh}_l0, head.weight, head.bias.
    """

    def __init__(self, hidden: int, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("series_mean", torch.tensor([mean]))
        self.register_buffer("series_std", torch.tensor([std]))
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        z = ((history - self.series_mean) / self.series_std).unsqueeze(-1)
        out, _ = self.lstm(z)
        return self.head(out[:, -1]) * self.series_std + self.series_mean


class HashedBagOfWords(nn.Module):
    """Text classifier: token counts hashed into buckets (crc32 % buckets), L1-normalized, one Linear."""

    def __init__(self, buckets: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(buckets, classes)

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        return self.linear(bags)


def hash_texts(texts: list[str], buckets: int = TEXT_BUCKETS) -> torch.Tensor:
    bags = torch.zeros(len(texts), buckets)
    for row, text in enumerate(texts):
        tokens = TOKEN.findall(text.lower())
        for token in tokens:
            bags[row, zlib.crc32(token.encode()) % buckets] += 1.0 / max(len(tokens), 1)
    return bags


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


def _stats(x: torch.Tensor, names: list[str]) -> dict[str, dict[str, float]]:
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return {n: {"mean": round(float(m), 6), "std": round(float(s), 6)} for n, m, s in zip(names, mean, std)}


def _buffers(stats: dict[str, dict[str, float]], names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    # The module standardizes with the same rounded numbers the metadata records.
    return (torch.tensor([stats[n]["mean"] for n in names]), torch.tensor([stats[n]["std"] for n in names]))


def regime_classifier(gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    x, y = data.market(3000, gen)
    stats = _stats(x, data.FEATURES)
    layers = [len(data.FEATURES), 32, 32, len(data.REGIMES)]
    model = MLP(layers, *_buffers(stats, data.FEATURES))
    loss = _fit(model, lambda: nn.functional.cross_entropy(model(x), y), steps, 1e-2, progress)
    accuracy = float((model(x).argmax(1) == y).float().mean())
    return Trained("regime_classifier", model, {
        "interface": "classifier", "task": "classification",
        "architecture": {"type": "mlp", "layers": layers, "activation": "relu", "output": "logits",
                         "input_standardized": True},
        "feature_names": data.FEATURES, "class_labels": data.REGIMES, "feature_stats": stats,
        "training": {"samples": len(y), "steps": steps, "loss": round(loss, 6), "accuracy": round(accuracy, 4)},
    })


def alpha_model(regime: str, gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    index = data.REGIMES.index(regime)
    x, _ = data.market(2000, gen, regime=index)
    y = data.alpha_target(x, index, gen)
    stats = _stats(x, data.FEATURES)
    layers = [len(data.FEATURES), 32, 16, 1]
    model = MLP(layers, *_buffers(stats, data.FEATURES))
    scale = float(y.std())   # regress in units of the target's spread so one learning rate fits all
    loss = _fit(model, lambda: nn.functional.mse_loss(model(x), y / scale), steps, 1e-2, progress)
    with torch.no_grad():
        model.net[-1].weight.mul_(scale)
        model.net[-1].bias.mul_(scale)
    return Trained(f"alpha_{regime}", model, {
        "interface": "predictor", "task": "regression", "regime": regime,
        "architecture": {"type": "mlp", "layers": layers, "activation": "relu", "output": "value",
                         "input_standardized": True},
        "feature_names": data.FEATURES, "target": "forward_return_5d", "feature_stats": stats,
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
        "feature_names": ["value"], "feature_stats": {"value": {"mean": mean, "std": std}},
        "training": {"samples": int(x.shape[0]), "steps": steps, "batch_size": batch, "loss": round(loss, 6)},
    })


def news_sentiment(gen: torch.Generator, steps: int, progress: Progress) -> Trained:
    texts, y = data.headlines(1500, gen)
    bags = hash_texts(texts)
    model = HashedBagOfWords(TEXT_BUCKETS, len(data.SENTIMENTS))
    loss = _fit(model, lambda: nn.functional.cross_entropy(model(bags), y), steps, 5e-2, progress)
    accuracy = float((model(bags).argmax(1) == y).float().mean())
    lengths = torch.tensor([len(TOKEN.findall(t.lower())) for t in texts], dtype=torch.float32)
    return Trained("news_sentiment", model, {
        "interface": "analyzer", "task": "text_classification",
        "architecture": {"type": "hashed_bow_linear", "buckets": TEXT_BUCKETS, "hash": "crc32",
                         "tokenizer": TOKEN.pattern, "lowercase": True, "weighting": "l1_term_frequency",
                         "output": "logits"},
        "class_labels": data.SENTIMENTS, "feature_stats": _stats(lengths.unsqueeze(1), ["token_count"]),
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
