"""Model architectures that an artifact's `metadata.architecture` names, rebuilt from that spec alone.

Weights travel as safetensors and code never does: a service rebuilds the module from the spec here and
loads the state dict into it (strictly), so no artifact can bring code of its own. The demo trains
these; serving runs them; the compiler exports them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from services.core.errors import InvalidArgument

TOKEN = re.compile(r"[a-z0-9']+")


class MLP(nn.Module):
    """state_dict: input_mean, input_std, net.{0,2,4,...}.weight/bias (Linear, ReLU between)."""

    def __init__(self, layers: list[int], mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("input_mean", (mean if mean is not None else torch.zeros(layers[0])).clone().float())
        self.register_buffer("input_std", (std if std is not None else torch.ones(layers[0])).clone().float())
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

    def __init__(self, hidden: int, mean: float = 0.0, std: float = 1.0, num_layers: int = 1) -> None:
        super().__init__()
        self.register_buffer("series_mean", torch.tensor([mean]))
        self.register_buffer("series_std", torch.tensor([std]))
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        z = ((history - self.series_mean) / self.series_std).unsqueeze(-1)
        out, _ = self.lstm(z)
        return self.head(out[:, -1]) * self.series_std + self.series_mean


class HashedBagOfWords(nn.Module):
    """Text classifier over hashed token counts (see `hash_texts`): one Linear layer."""

    def __init__(self, buckets: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(buckets, classes)

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        return self.linear(bags)


class TransformerEncoderRegressor(nn.Module):
    """(batch, seq_len) series -> (batch, outputs): a per-step projection, learned positions, a
    TransformerEncoder (batch_first, no dropout) and a mean-pooled linear head.

    state_dict: series_mean, series_std, proj.{weight,bias}, position, encoder.layers.N.*, head.{weight,bias}.
    """

    def __init__(self, seq_len: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int,
                 outputs: int = 1) -> None:
        super().__init__()
        self.register_buffer("series_mean", torch.zeros(1))
        self.register_buffer("series_std", torch.ones(1))
        self.proj = nn.Linear(1, d_model)
        self.position = nn.Parameter(torch.zeros(seq_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0, batch_first=True)
        # No nested tensors: inputs are dense (no padding masks) and exporters need plain tensors.
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, outputs)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        z = ((series - self.series_mean) / self.series_std).unsqueeze(-1)
        h = self.encoder(self.proj(z) + self.position)
        return self.head(h.mean(dim=1))


def hash_texts(texts: list[str], buckets: int) -> torch.Tensor:
    """Token counts hashed into buckets (crc32 % buckets), L1-normalised per text."""
    bags = torch.zeros(len(texts), buckets)
    for row, text in enumerate(texts):
        tokens = TOKEN.findall(text.lower())
        for token in tokens:
            bags[row, zlib.crc32(token.encode()) % buckets] += 1.0 / max(len(tokens), 1)
    return bags


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # specs that crossed a protobuf Struct carry doubles
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgument("must be a positive integer", field=f"metadata.architecture.{field}")
    return value


def _int(spec: Mapping[str, Any], key: str) -> int:
    return _positive_int(spec.get(key), key)


def _mlp(spec: Mapping[str, Any]) -> nn.Module:
    layers = spec.get("layers")
    if not isinstance(layers, list) or len(layers) < 2:
        raise InvalidArgument("an mlp needs at least two layer sizes", field="metadata.architecture.layers")
    return MLP([_positive_int(n, f"layers[{i}]") for i, n in enumerate(layers)])


def _lstm(spec: Mapping[str, Any]) -> nn.Module:
    return LSTMForecaster(hidden=_int(spec, "hidden_size"), num_layers=int(spec.get("num_layers", 1)))


def _bow(spec: Mapping[str, Any]) -> nn.Module:
    return HashedBagOfWords(_int(spec, "buckets"), _int(spec, "classes"))


def _transformer(spec: Mapping[str, Any]) -> nn.Module:
    d_model, nhead = _int(spec, "d_model"), _int(spec, "nhead")
    if d_model % nhead:
        raise InvalidArgument("d_model must be divisible by nhead", field="metadata.architecture.nhead")
    optional = {key: _int(spec, key) for key in ("num_layers", "dim_feedforward", "outputs") if key in spec}
    return TransformerEncoderRegressor(
        seq_len=_int(spec, "seq_len"), d_model=d_model, nhead=nhead, num_layers=optional.get("num_layers", 1),
        dim_feedforward=optional.get("dim_feedforward", 4 * d_model), outputs=optional.get("outputs", 1),
    )


BUILDERS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "mlp": _mlp,
    "lstm_forecaster": _lstm,
    "hashed_bow_linear": _bow,
    "transformer_encoder": _transformer,
}


def build_module(architecture: Mapping[str, Any]) -> nn.Module:
    """An untrained module for `architecture`; load weights with `load_state_dict(strict=True)`."""
    kind = architecture.get("type") if isinstance(architecture, Mapping) else None
    builder = BUILDERS.get(kind)
    if builder is None:
        raise InvalidArgument(
            f"unknown architecture {kind!r}; known: {sorted(BUILDERS)}", field="metadata.architecture.type"
        )
    return builder(architecture)


def load_module(architecture: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The module with its weights, in eval mode; a state dict that does not fit is refused."""
    module = build_module(architecture)
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:
        raise InvalidArgument(f"weights do not fit the architecture: {exc}", field="metadata.architecture") from None
    return module.eval()
