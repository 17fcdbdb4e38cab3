"""Compiler test fixtures: three small real models (an MLP classifier, an LSTM forecaster, a tiny
transformer encoder) rebuilt from architecture specs the way the service rebuilds them, a compiler
catalog, and a helper that compiles one in-memory module into a Triton entry folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from services.compiler.build import Compiled, compile_and_validate
from services.compiler.compilers.registry import CompilerCatalog
from services.compiler.models import build_module
from services.compiler.settings import CompilerSettings
from services.compiler.signature import ModelSignature, signature_for
from services.compiler.validation import ValidationPolicy

MAX_BATCH = 64
ARCHITECTURES = {
    "mlp": {"type": "mlp", "layers": [6, 32, 16, 3], "activation": "relu", "output": "logits"},
    "lstm": {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 12, "num_layers": 1, "window": 16},
    "transformer": {"type": "transformer_encoder", "seq_len": 8, "d_model": 16, "nhead": 2, "num_layers": 2,
                    "dim_feedforward": 32},
}
STATS = {  # inputs the way training saw them: validation draws around these
    "mlp": {"training_stats": {"mean": [0.5, -1.0, 2.0, 0.0, 10.0, -3.0], "std": [1.0, 0.5, 2.0, 1.0, 3.0, 0.2]},
            "task": "classification"},
    "lstm": {"feature_stats": {"value": {"mean": 100.0, "std": 5.0}}, "feature_names": ["value"]},
    "transformer": {},
}


class DataDependent(nn.Module):
    """Branches on the values it sees: torch.export refuses it, torch.jit.trace freezes one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.linear(x)
        return -self.linear(x)


@dataclass(frozen=True)
class Model:
    name: str
    architecture: dict[str, Any]
    module: torch.nn.Module
    signature: ModelSignature

    @property
    def metadata(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **STATS[self.name]}


def make_model(name: str, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    module = build_module(ARCHITECTURES[name]).eval()
    if name == "lstm":  # a forecaster of a series around 100: the module standardises inside
        module.series_mean.fill_(100.0)
        module.series_std.fill_(5.0)
    if name == "mlp":
        module.input_mean.copy_(torch.tensor(STATS["mlp"]["training_stats"]["mean"]))
        module.input_std.copy_(torch.tensor(STATS["mlp"]["training_stats"]["std"]))
    metadata = {"architecture": ARCHITECTURES[name], **STATS[name]}
    return Model(name, ARCHITECTURES[name], module, signature_for(metadata))


@pytest.fixture(scope="session")
def models() -> dict[str, Model]:
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    return {name: make_model(name) for name in ARCHITECTURES}


@pytest.fixture(scope="session")
def catalog() -> CompilerCatalog:
    return CompilerCatalog.build(CompilerSettings())


@pytest.fixture(scope="session")
def compile_model(catalog, tmp_path_factory):
    """Compiles an in-memory module; plain compiles of the shared models are made once per session
    (exports take seconds), so tests that look at the same output share it."""
    cache: dict[tuple, Compiled] = {}

    def compile_(model: Model, target: str, kwargs: dict | None = None, *, policy: ValidationPolicy | None = None,
                 module: torch.nn.Module | None = None, max_batch_size: int = MAX_BATCH) -> Compiled:
        key = (model.name, target, tuple(sorted((kwargs or {}).items())), max_batch_size)
        shared = module is None and policy is None
        if shared and key in cache:
            return cache[key]
        resolved = catalog.resolve(target)
        effective = resolved.compiler.check(resolved.target, kwargs or {}, model.signature)
        folder: Path = tmp_path_factory.mktemp(f"{model.name}-{resolved.target}")
        compiled = compile_and_validate(
            resolved.compiler, resolved.target, effective, module or model.module, model.signature, max_batch_size,
            (policy or ValidationPolicy()).checked(max_batch_size), folder / "entry", folder / "scratch",
        )
        if shared:
            cache[key] = compiled
        return compiled

    return compile_
