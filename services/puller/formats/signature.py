"""Tensor descriptions as the metadata records them: name, dtype ("float32", "int64", "string", ...) and
shape (-1 for a symbolic or unknown dimension), plus what a model tells about its classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# ONNX Runtime's type strings -> the dtype names of the metadata.
_ORT_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16"}
ALLOWED_INPUT_DTYPES = ("float32", "float64", "int64", "int32", "string")
NUMERIC_DTYPES = ("float32", "float64", "int64", "int32")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    def describe(self) -> str:
        return f"{self.name!r} {self.dtype} {list(self.shape)}"

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES

    def is_batch_of(self, *widths: int | None) -> bool:
        """[-1] (width None) or [-1, w] for one of `widths` (-1 in widths: any width)."""
        if len(self.shape) == 1:
            return None in widths
        if len(self.shape) != 2:
            return False
        return any(w is not None and (w == -1 or self.shape[1] == w) for w in widths)


@dataclass
class ModelFacts:
    """What binding needs to know about the served tensors, whatever the format."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    classes: list[str] | None = None        # the model's own classes, in probability order (None: none)
    probability_output: str | None = None   # a [-1, C] probability tensor
    label_output: str | None = None
    model_feature_names: list[str] | None = None

    def output(self, name: str | None) -> TensorSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


def ort_spec(arg: Any) -> TensorSpec:
    """A TensorSpec of an onnxruntime NodeArg (its `type` is e.g. "tensor(float)")."""
    kind = str(arg.type)
    if kind.startswith("tensor(") and kind.endswith(")"):
        inner = kind[len("tensor("):-1]
        dtype = _ORT_DTYPES.get(inner, inner)
    else:
        dtype = kind  # seq(...) / map(...): recorded as it is; nothing binds to it
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, dtype, shape)


def probability_candidates(outputs: list[TensorSpec], classes: int | None) -> list[TensorSpec]:
    """Float [-1, C] outputs (C = `classes` when known, else any C >= 2)."""
    found = []
    for spec in outputs:
        if spec.dtype not in ("float32", "float64") or len(spec.shape) != 2:
            continue
        if (classes is not None and spec.shape[1] == classes) or (classes is None and spec.shape[1] >= 2):
            found.append(spec)
    return found


def label_candidate(outputs: list[TensorSpec], exclude: str | None) -> TensorSpec | None:
    """An int64 or string [-1] / [-1, 1] output: a classifier's predicted label."""
    for spec in outputs:
        if spec.name != exclude and spec.dtype in ("int64", "string", "int32") and spec.is_batch_of(None, 1):
            return spec
    return None
