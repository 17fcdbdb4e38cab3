"""A model's tensor signature (what a compiled graph takes and gives) and realistic validation inputs,
both derived from an artifact's metadata: `architecture` fixes the row shape, training statistics fix
the input distribution (quantization error depends on it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
# Architectures whose input is text: their tokenizer/hashing runs in Python outside the module.
TEXT_ARCHITECTURES = {"hashed_bow_linear": "tokens are crc32-hashed into buckets in Python, outside the module"}


@dataclass(frozen=True)
class TensorSig:
    """One tensor: dims per row (the batch dimension is implicit and dynamic)."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorSig, ...]
    outputs: tuple[TensorSig, ...] = ()
    text_input: bool = False
    text_reason: str = ""
    classification: bool = False  # outputs are class scores: accuracy delta is top-1 disagreement
    mean: tuple[float, ...] | None = None  # per input element, for validation inputs
    std: tuple[float, ...] | None = None

    @property
    def input(self) -> TensorSig:
        return self.inputs[0]

    def with_outputs(self, outputs: tuple[TensorSig, ...]) -> "ModelSignature":
        return ModelSignature(self.inputs, outputs, self.text_input, self.text_reason, self.classification,
                              self.mean, self.std)


def _positive(spec: Mapping[str, Any], key: str, kind: str) -> int:
    value = spec.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FailedPrecondition(
            f"a {kind} needs a positive integer {key} to fix the compiled input shape",
            field=f"metadata.architecture.{key}",
        )
    return value


def input_dims(architecture: Mapping[str, Any]) -> tuple[int, ...]:
    kind = architecture.get("type")
    if kind == "mlp":
        layers = architecture.get("layers") or [0]
        return (_positive({"layers[0]": layers[0]}, "layers[0]", kind),)
    if kind == "lstm_forecaster":
        return (_positive(architecture, "window", kind),)
    if kind == "transformer_encoder":
        return (_positive(architecture, "seq_len", kind),)
    if kind in TEXT_ARCHITECTURES:  # refused for its text input anyway; the shape only describes it
        buckets = architecture.get("buckets")
        return (int(buckets),) if isinstance(buckets, (int, float)) and buckets >= 1 else (1,)
    raise FailedPrecondition(f"no input signature is known for architecture {kind!r}",
                             field="metadata.architecture.type")


def signature_for(metadata: Mapping[str, Any]) -> ModelSignature:
    architecture = metadata.get("architecture")
    if not isinstance(architecture, Mapping):
        raise FailedPrecondition(
            "has no metadata.architecture: the compiler rebuilds a module from its architecture spec and "
            "safetensors weights, and never runs code shipped with an artifact",
            field="artifact",
        )
    kind = architecture.get("type")
    dims = input_dims(architecture)
    task = str(metadata.get("task", ""))
    classification = architecture.get("output") == "logits" or "classification" in task
    mean, std = input_stats(metadata, kind, dims)
    return ModelSignature(
        inputs=(TensorSig(INPUT_NAME, dims),), text_input=kind in TEXT_ARCHITECTURES,
        text_reason=TEXT_ARCHITECTURES.get(kind, ""), classification=classification, mean=mean, std=std,
    )


def input_stats(metadata: Mapping[str, Any], kind: Any, dims: tuple[int, ...]):
    """(mean, std) per input element from `training_stats` ({"mean": [...], "std": [...]}) or
    `feature_stats` ({name: {"mean", "std"}}); a one-feature series repeats over its window."""
    size = int(np.prod(dims))
    stats = metadata.get("training_stats")
    mean = std = None
    if isinstance(stats, Mapping) and isinstance(stats.get("mean"), list) and isinstance(stats.get("std"), list):
        mean, std = list(stats["mean"]), list(stats["std"])
    elif isinstance(metadata.get("feature_stats"), Mapping):
        names = metadata.get("feature_names") or list(metadata["feature_stats"])
        rows = [metadata["feature_stats"].get(n) for n in names]
        if rows and all(isinstance(r, Mapping) and "mean" in r and "std" in r for r in rows):
            mean, std = [r["mean"] for r in rows], [r["std"] for r in rows]
    if mean is None or std is None or len(mean) != len(std):
        return None, None
    if len(mean) == 1 and size > 1:
        mean, std = mean * size, std * size
    if len(mean) != size or not all(isinstance(v, (int, float)) for v in (*mean, *std)):
        return None, None
    return tuple(float(v) for v in mean), tuple(max(float(v), 1e-6) for v in std)


def sample_inputs(signature: ModelSignature, batch: int, seed: int) -> np.ndarray:
    """A reproducible batch drawn around the training distribution (standard normal without stats)."""
    rng = np.random.default_rng(seed)
    dims = signature.input.dims
    x = rng.standard_normal((batch, *dims)).astype(np.float32)
    if signature.mean is not None and signature.std is not None:
        mean = np.asarray(signature.mean, dtype=np.float32).reshape(dims)
        std = np.asarray(signature.std, dtype=np.float32).reshape(dims)
        x = x * std + mean
    return x
