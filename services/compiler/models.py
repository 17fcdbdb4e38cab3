"""Modules the compiler rebuilds from an artifact's `metadata.architecture`: the shared ones from
services/core/models/architectures.py, plus "transformer_encoder" (proposed for that module; it lives
here until it moves, so serving cannot run it in-process yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.models import architectures


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


def _int(spec: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = spec.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgument("must be a positive integer", field=f"metadata.architecture.{key}")
    return value


def _transformer(spec: Mapping[str, Any]) -> nn.Module:
    d_model, nhead = _int(spec, "d_model"), _int(spec, "nhead")
    if d_model % nhead:
        raise InvalidArgument("d_model must be divisible by nhead", field="metadata.architecture.nhead")
    return TransformerEncoderRegressor(
        seq_len=_int(spec, "seq_len"), d_model=d_model, nhead=nhead, num_layers=_int(spec, "num_layers", 1),
        dim_feedforward=_int(spec, "dim_feedforward", 4 * d_model), outputs=_int(spec, "outputs", 1),
    )


LOCAL_BUILDERS = {"transformer_encoder": _transformer}


def known_architectures() -> list[str]:
    return sorted({*architectures.BUILDERS, *LOCAL_BUILDERS})


def build_module(architecture: Mapping[str, Any]) -> nn.Module:
    kind = architecture.get("type")
    builder = LOCAL_BUILDERS.get(kind)
    if builder is not None:
        return builder(architecture)
    if kind not in architectures.BUILDERS:
        raise FailedPrecondition(
            f"cannot rebuild architecture {kind!r}; the compiler knows {known_architectures()}",
            field="metadata.architecture.type",
        )
    return architectures.build_module(architecture)


def load_module(architecture: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The eval-mode fp32 module with its weights (strict: weights that do not fit are refused)."""
    module = build_module(architecture)
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise FailedPrecondition(
            f"weights do not fit the architecture: {first[0] if first else exc}", field="metadata.architecture"
        ) from None
    return module.float().eval()
