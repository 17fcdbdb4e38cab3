"""Synthetic training data for the demo models. Deterministic for a given torch.Generator seed.

The numbers are made up but shaped like the real thing (returns, volatility, RSI; price-like series;
headline-like texts), so the trained models behave plausibly when the serving demo calls them.
"""

from __future__ import annotations

import torch

FEATURES = ["return_1d", "return_5d", "return_20d", "volatility_20d", "volume_zscore", "rsi_14"]
REGIMES = ["bull", "bear", "sideways"]
SENTIMENTS = ["negative", "neutral", "positive"]

# Per-regime centre and spread of each feature, in FEATURES order.
_CENTRES = torch.tensor([
    [0.004, 0.020, 0.080, 0.15, 0.5, 62.0],     # bull
    [-0.005, -0.025, -0.090, 0.30, 1.0, 38.0],  # bear
    [0.000, 0.000, 0.005, 0.10, -0.3, 50.0],    # sideways
])
_SPREADS = torch.tensor([0.010, 0.025, 0.050, 0.05, 1.0, 8.0])

# How each regime turns today's features into the next 5-day return (the alpha models learn these).
_ALPHA_WEIGHTS = torch.tensor([
    [0.30, 0.25, 0.10, -0.05, 0.004, 0.0004],
    [0.10, 0.35, 0.05, -0.10, -0.003, 0.0006],
    [-0.40, -0.20, 0.00, 0.00, 0.001, -0.0008],  # sideways markets mean-revert
])
_ALPHA_BIAS = torch.tensor([-0.020, -0.030, 0.040])


def market(n: int, gen: torch.Generator, regime: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` rows of market features and their regime index (all one regime when `regime` is given)."""
    if regime is None:
        labels = torch.randint(0, len(REGIMES), (n,), generator=gen)
    else:
        labels = torch.full((n,), regime, dtype=torch.long)
    noise = torch.randn(n, len(FEATURES), generator=gen) * _SPREADS
    x = _CENTRES[labels] + noise
    x[:, 3] = x[:, 3].abs()                      # volatility is positive
    x[:, 5] = x[:, 5].clamp(0.0, 100.0)          # RSI lives in [0, 100]
    return x, labels


def alpha_target(x: torch.Tensor, regime: int, gen: torch.Generator) -> torch.Tensor:
    """Next 5-day return for rows of regime `regime`: a regime-specific signal plus noise."""
    signal = x @ _ALPHA_WEIGHTS[regime] + _ALPHA_BIAS[regime] + 0.5 * x[:, 1] * x[:, 3]
    return (signal + torch.randn(x.shape[0], generator=gen) * 0.004).unsqueeze(1)


def price_series(n_series: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """Price-like series: level around 100, drift, two seasonal cycles and AR(1) noise."""
    t = torch.arange(length, dtype=torch.float32)
    level = 80.0 + 40.0 * torch.rand(n_series, 1, generator=gen)
    drift = (torch.rand(n_series, 1, generator=gen) - 0.5) * 0.1
    phase = torch.rand(n_series, 2, generator=gen) * 6.283
    seasonal = 3.0 * torch.sin(t / 8.0 + phase[:, :1]) + 1.5 * torch.sin(t / 3.0 + phase[:, 1:])
    shocks = torch.randn(n_series, length, generator=gen) * 0.4
    noise = torch.zeros(n_series, length)
    for i in range(1, length):
        noise[:, i] = 0.7 * noise[:, i - 1] + shocks[:, i]
    return level + drift * t + seasonal + noise


def windows(series: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (history of `window` values, next value) pair of every series."""
    x = series.unfold(1, window + 1, 1).reshape(-1, window + 1)
    return x[:, :window], x[:, window:]


_WORDS = {
    "negative": ["misses", "plunges", "loss", "downgrade", "weak", "lawsuit", "recall", "falls", "bearish",
                 "default", "layoffs", "warning", "slump", "fraud"],
    "neutral": ["announces", "reports", "schedules", "meeting", "quarter", "conference", "update", "filing",
                "holds", "names", "board", "annual", "statement", "results"],
    "positive": ["beats", "surges", "record", "growth", "upgrade", "strong", "profit", "rally", "gains",
                 "bullish", "outperforms", "expands", "approval", "dividend"],
}
_SUBJECTS = ["acme corp", "globex", "initech", "umbrella", "stark industries", "wayne enterprises", "hooli"]


def headlines(n: int, gen: torch.Generator) -> tuple[list[str], torch.Tensor]:
    """Headline-like texts and their sentiment index (SENTIMENTS order)."""
    labels = torch.randint(0, len(SENTIMENTS), (n,), generator=gen)
    texts = []
    for label in labels.tolist():
        words = _WORDS[SENTIMENTS[label]]
        fillers = _WORDS["neutral"]
        k = int(torch.randint(2, 5, (1,), generator=gen))
        chosen = [words[int(i)] for i in torch.randint(0, len(words), (k,), generator=gen)]
        chosen += [fillers[int(i)] for i in torch.randint(0, len(fillers), (2,), generator=gen)]
        order = torch.randperm(len(chosen), generator=gen).tolist()
        subject = _SUBJECTS[int(torch.randint(0, len(_SUBJECTS), (1,), generator=gen))]
        texts.append(subject + " " + " ".join(chosen[i] for i in order))
    return texts, labels
