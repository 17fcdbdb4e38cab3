"""An imported model's signature (docs/byom.md, `metadata.signature`), read once and checked.

The puller records the tensors of what serving runs (`metadata.runtime`): names, dtypes and shapes
(-1: any size, the first dimension is the batch), the signature kind and which output carries the value,
the probabilities or the label. Serving binds its interfaces from this, never from guesses: a metadata
that does not say what an interface needs is refused here, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition

IMPORTED_FRAMEWORKS = ("onnx", "xgboost", "lightgbm")
RUNTIME_KINDS = ("onnxruntime", "xgboost", "lightgbm")
# signature kind -> the interfaces it can back (docs/byom.md, "Binding"); the first is the default
KIND_INTERFACES: dict[str, tuple[str, ...]] = {
    "regression": ("predictor",),
    "classification": ("classifier",),
    "series": ("forecaster", "predictor"),
    "text": ("classifier", "analyzer"),
}
_DTYPES = {"float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32",
           "uint64", "bool", "string"}


def _refuse(message: str, field: str) -> FailedPrecondition:
    return FailedPrecondition(message, field=f"metadata.{field}")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str                   # numpy's name ("float32", "int64", ...) or "string"
    shape: tuple[int, ...]       # with the batch dimension first; -1 for any size

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype)

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape per row (what a Triton config lists)."""
        return self.shape[1:]

    @property
    def width(self) -> int:
        """Values per row: 1 for a [-1] or [-1, 1] tensor, the size of the second dimension otherwise."""
        return self.shape[1] if len(self.shape) == 2 else 1

    @property
    def is_string(self) -> bool:
        return self.dtype == "string"


@dataclass(frozen=True)
class ModelSignature:
    kind: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]      # the outputs serving reads (value, probabilities, label), graph order
    value_output: str = ""
    probability_output: str = ""
    label_output: str = ""
    classes: tuple[str, ...] = ()
    width: int = 1                       # values per input row (a [-1, -1] input: from the window or names)

    def output(self, name: str) -> TensorInfo:
        return next(t for t in self.outputs if t.name == name)

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    @property
    def interfaces(self) -> tuple[str, ...]:
        return KIND_INTERFACES[self.kind]


def _tensor(raw: Any, field: str) -> TensorInfo:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise _refuse("each tensor is {name, dtype, shape}", field)
    dtype = str(raw.get("dtype", "")).lower()
    dtype = {"float": "float32", "double": "float64", "str": "string", "bytes": "string"}.get(dtype, dtype)
    if dtype not in _DTYPES:
        raise _refuse(f"dtype {raw.get('dtype')!r} of {raw['name']!r} is not one of {sorted(_DTYPES)}", field)
    shape = raw.get("shape")
    if (not isinstance(shape, Sequence) or isinstance(shape, str) or not 1 <= len(shape) <= 2
            or any(isinstance(d, bool) or not isinstance(d, (int, float)) or int(d) != d or (d < 1 and d != -1)
                   for d in shape)):
        raise _refuse(f"shape {shape!r} of {raw['name']!r}: [-1] or [-1, n] (n >= 1 or -1)", field)
    return TensorInfo(raw["name"], dtype, tuple(int(d) for d in shape))


def _tensors(raw: Any, field: str, *, only: set[str] | None = None) -> tuple[TensorInfo, ...]:
    """The tensors listed under `field`; with `only`, just those named (others, e.g. a ZipMap's sequence
    output or a tensor of a dtype serving has no use for, are left out unread)."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise _refuse("a non-empty list of tensors", field)
    names = [t.get("name") if isinstance(t, Mapping) else None for t in raw]
    if len(set(names)) != len(names):
        raise _refuse(f"tensor names repeat: {names}", field)
    return tuple(_tensor(t, f"{field}[{i}]") for i, t in enumerate(raw) if only is None or names[i] in only)


def _named_output(signature: Mapping[str, Any], key: str, outputs: tuple[TensorInfo, ...], *,
                  required: bool) -> str:
    name = signature.get(key) or ""
    if not name and required:
        raise _refuse(f"a {signature.get('kind')} signature names its {key}", f"signature.{key}")
    if name and name not in {t.name for t in outputs}:
        raise _refuse(f"{name!r} is not one of the outputs {[t.name for t in outputs]}", f"signature.{key}")
    return str(name)


def parse_signature(metadata: Mapping[str, Any]) -> ModelSignature:
    """The checked signature of an imported model's metadata (FailedPrecondition naming what does not fit)."""
    raw = metadata.get("signature")
    if not isinstance(raw, Mapping):
        raise _refuse("an imported model's metadata records its signature (docs/byom.md)", "signature")
    kind = raw.get("kind")
    if kind not in KIND_INTERFACES:
        raise _refuse(f"kind {kind!r} is not one of {sorted(KIND_INTERFACES)}", "signature.kind")
    inputs = _tensors(raw.get("inputs"), "signature.inputs")
    listed = raw.get("outputs")
    named = [t.get("name") for t in listed if isinstance(t, Mapping)] if isinstance(listed, Sequence) else []
    used = {str(raw.get(k)) for k in ("value_output", "probability_output", "label_output") if raw.get(k)}
    missing = sorted(used - set(named))
    if missing:
        raise _refuse(f"{missing[0]!r} is not one of the outputs {named}", "signature.outputs")
    outputs = _tensors(listed, "signature.outputs", only=used)
    if len(inputs) != 1:
        raise _refuse(f"serving binds models with one input; this one has {[t.name for t in inputs]}",
                      "signature.inputs")
    first = inputs[0]
    if kind == "text":
        if not first.is_string or first.width != 1:
            raise _refuse(f"a text model takes a string [-1] or [-1, 1] input; {first.name!r} is "
                          f"{first.dtype} {list(first.shape)}", "signature.inputs[0]")
    elif first.is_string or len(first.shape) != 2:
        raise _refuse(f"a {kind} model takes a numeric [-1, n] input; {first.name!r} is {first.dtype} "
                      f"{list(first.shape)}", "signature.inputs[0]")
    value = _named_output(raw, "value_output", outputs, required=kind in ("regression", "series"))
    probability = _named_output(raw, "probability_output", outputs, required=kind in ("classification", "text"))
    label = _named_output(raw, "label_output", outputs, required=False)
    classes: tuple[str, ...] = ()
    if probability:
        tensor = next(t for t in outputs if t.name == probability)
        if tensor.is_string or len(tensor.shape) != 2:
            raise _refuse(f"{probability!r} must be a numeric [-1, C] tensor, not {tensor.dtype} "
                          f"{list(tensor.shape)}", "signature.probability_output")
        declared = raw.get("classes")
        if not isinstance(declared, Sequence) or isinstance(declared, str) or not declared:
            raise _refuse("a classifier's signature lists its classes, in probability order", "signature.classes")
        # numbers crossed a protobuf Struct as doubles: class 1 is "1", not "1.0"
        classes = tuple(str(int(c)) if isinstance(c, float) and c.is_integer() else str(c) for c in declared)
        if tensor.shape[1] not in (-1, len(classes)):
            raise _refuse(f"{len(classes)} classes for a probability tensor of {tensor.shape[1]} columns",
                          "signature.classes")
    if value:
        tensor = next(t for t in outputs if t.name == value)
        if tensor.is_string:
            raise _refuse(f"{value!r} must be numeric", "signature.value_output")
        if kind == "series" and tensor.width != 1:
            raise _refuse(f"a window model answers one value per row; {value!r} is {list(tensor.shape)}",
                          "signature.value_output")
    return ModelSignature(kind, inputs, outputs, value, probability, label, classes,
                          _width(metadata, kind, first))


def _width(metadata: Mapping[str, Any], kind: str, first: TensorInfo) -> int:
    """Values per row: the input's own width, else (an open [-1, -1]) the window or the feature names."""
    if kind == "text":
        return 1
    if first.shape[1] > 0:
        return first.shape[1]
    declared = metadata.get("window") if kind == "series" else len(metadata.get("feature_names") or ())
    if isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared >= 1:
        return int(declared)
    what = "window" if kind == "series" else "feature_names"
    raise _refuse(f"input {first.name!r} leaves its width open; the metadata gives it as {what}", what)


def series_name(metadata: Mapping[str, Any]) -> str:
    """The one column a forecaster's rules see: the series' own name (feature_names[0]), else "value"."""
    names = metadata.get("feature_names")
    return str(names[0]) if isinstance(names, list) and len(names) == 1 else "value"


def window_columns(name: str, width: int) -> tuple[str, ...]:
    """A window row's columns, oldest first: "value[0]" .. "value[W-1]"."""
    return tuple(f"{name}[{i}]" for i in range(width))


def runtime_spec(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """`metadata.runtime`, checked: a known kind and a relative file."""
    runtime = metadata.get("runtime")
    if not isinstance(runtime, Mapping):
        raise _refuse("an imported model's metadata names what serving runs (docs/byom.md)", "runtime")
    if runtime.get("kind") not in RUNTIME_KINDS:
        raise _refuse(f"kind {runtime.get('kind')!r} is not one of {list(RUNTIME_KINDS)}", "runtime.kind")
    file = runtime.get("file")
    if not isinstance(file, str) or not file or file.startswith("/") or "\\" in file or \
            any(part in ("", ".", "..") for part in file.split("/")):
        raise _refuse(f"{file!r} is not a relative path inside the artifact", "runtime.file")
    return runtime


def declared_interfaces(metadata: Mapping[str, Any], signature: ModelSignature) -> tuple[str, ...]:
    """The interfaces this artifact backs: `metadata.interfaces` (those its signature kind allows), else
    every interface of its kind."""
    listed = metadata.get("interfaces")
    if isinstance(listed, Sequence) and not isinstance(listed, str) and listed:
        return tuple(str(i) for i in listed if str(i) in signature.interfaces)
    return signature.interfaces
