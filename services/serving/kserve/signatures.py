"""What a session looks like as a KServe v2 model: its tensors, per interface, and how a request's
tensors become typed calls and the results become output tensors. The first dimension is the batch.

    predictor   input FP32 [-1, F]                        -> output FP32 [-1, K]
    classifier  input FP32 [-1, F] (texts BYTES [-1, 1])  -> label BYTES, probability FP32 [-1, 1], scores FP32 [-1, C]
    analyzer    texts BYTES [-1, 1]                       -> label BYTES, score FP32 [-1, 1], scores FP32 [-1, C]
    forecaster  history FP32 [-1, -1], horizon INT32 [-1, 1] (one value, or one per row, all equal)
                                                          -> forecast FP32 [-1, horizon]
    segmenter   series FP32 [-1, -1]                      -> change_points INT64 [-1, -1] (padded with -1),
                                                             count INT32 [-1, 1]

Tabular and text batches are ONE call (the tensor batch is one request to the scheduler); forecaster
and segmenter rows are one call each (each row is its own sequence or series). An imported model
(docs/byom.md) shows its own tensors instead: see kserve/imported.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from services.core.errors import InvalidArgument
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.text import TextBackend
from services.serving.interfaces.calls import AnalyzeCall, Call, ClassifyCall, ForecastCall, PredictCall, SegmentCall


@dataclass(frozen=True)
class TensorDef:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size


def _get(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    array = tensors.get(name)
    if array is None:
        raise InvalidArgument("missing input", field=name)
    if array.ndim == 0 or array.shape[0] < 1:
        raise InvalidArgument(f"shape {list(array.shape)} has no rows", field=name)
    return array


def _matrix(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    array = _get(tensors, name)
    if array.dtype.kind not in "fiub" or array.ndim != 2:
        raise InvalidArgument(f"expected a numeric [batch, n] tensor, got {array.dtype} {list(array.shape)}",
                              field=name)
    return array


def _texts(tensors: dict[str, np.ndarray], name: str) -> list[str]:
    array = _get(tensors, name)
    if array.dtype != object or (array.ndim == 2 and array.shape[1] != 1) or array.ndim > 2:
        raise InvalidArgument(f"expected a BYTES [batch] or [batch, 1] tensor, got {list(array.shape)}", field=name)
    try:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    except UnicodeDecodeError:
        raise InvalidArgument("texts must be UTF-8", field=name) from None


def _column(values: list, dtype) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


def _labels(values: list[str]) -> np.ndarray:
    array = np.empty((len(values), 1), dtype=object)
    array[:, 0] = [v.encode() for v in values]
    return array


class Signature(ABC):
    inputs: tuple[TensorDef, ...]
    outputs: tuple[TensorDef, ...]

    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend

    def calls(self, tensors: dict[str, np.ndarray]) -> list[Call]:
        known = {t.name for t in self.inputs}
        for name in tensors:
            if name not in known:
                raise InvalidArgument(f"unknown input; this model takes {sorted(known)}", field=name)
        return self._calls(tensors)

    @abstractmethod
    def _calls(self, tensors: dict[str, np.ndarray]) -> list[Call]: ...

    @abstractmethod
    def encode(self, results: list) -> dict[str, np.ndarray]:
        """Output tensors by name from the calls' results (in call order)."""


def _width(backend: ModelBackend) -> int:
    return int(getattr(backend, "expected_features", None) or -1)


class PredictorSignature(Signature):
    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        layers = backend.architecture.get("layers")
        outputs = int(layers[-1]) if isinstance(layers, list) and layers else -1
        self.inputs = (TensorDef("input", "FP32", (-1, _width(backend))),)
        self.outputs = (TensorDef("output", "FP32", (-1, outputs)),)

    def _calls(self, tensors):
        return [PredictCall(_matrix(tensors, "input"), field="input")]

    def encode(self, results):
        return {"output": np.asarray([p.values for p in results[0]], dtype=np.float32)}


class _Scored(Signature):
    """Classifier and analyzer outputs: a label, its probability or score, and every label's scores."""

    score_name = "probability"

    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.labels = tuple(getattr(backend, "labels", ()))
        self.outputs = (TensorDef("label", "BYTES", (-1, 1)), TensorDef(self.score_name, "FP32", (-1, 1)),
                        TensorDef("scores", "FP32", (-1, len(self.labels) or -1)))

    def _scored(self, results: list, score: str) -> dict[str, np.ndarray]:
        items = results[0]
        return {"label": _labels([r.label for r in items]),
                self.score_name: _column([getattr(r, score) for r in items], np.float32),
                "scores": np.asarray([[r.scores.get(label, 0.0) for label in self.labels] for r in items],
                                     dtype=np.float32).reshape(len(items), len(self.labels))}


class ClassifierSignature(_Scored):
    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.text = isinstance(backend, TextBackend)
        self.inputs = ((TensorDef("texts", "BYTES", (-1, 1)),) if self.text
                       else (TensorDef("input", "FP32", (-1, _width(backend))),))

    def _calls(self, tensors):
        return [ClassifyCall(_texts(tensors, "texts"), field="texts") if self.text
                else ClassifyCall(_matrix(tensors, "input"), field="input")]

    def encode(self, results):
        return self._scored(results, "probability")


class AnalyzerSignature(_Scored):
    score_name = "score"

    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.inputs = (TensorDef("texts", "BYTES", (-1, 1)),)

    def _calls(self, tensors):
        return [AnalyzeCall(_texts(tensors, "texts"))]

    def encode(self, results):
        return self._scored(results, "score")


class ForecasterSignature(Signature):
    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.inputs = (TensorDef("history", "FP32", (-1, -1)), TensorDef("horizon", "INT32", (-1, 1)))
        self.outputs = (TensorDef("forecast", "FP32", (-1, -1)),)

    def _calls(self, tensors):
        history = _matrix(tensors, "history")
        horizon = _get(tensors, "horizon")
        if horizon.dtype.kind not in "iu" or horizon.size not in (1, len(history)):
            raise InvalidArgument(f"expected one integer, or one per history row ({len(history)})", field="horizon")
        values = np.unique(horizon)
        if len(values) != 1:
            raise InvalidArgument("every row of one request needs the same horizon (the output is one matrix)",
                                  field="horizon")
        steps = int(values[0])
        return [ForecastCall(row, steps) for row in history]

    def encode(self, results):
        return {"forecast": np.asarray([r.values for r in results], dtype=np.float32)}


class SegmenterSignature(Signature):
    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.inputs = (TensorDef("series", "FP32", (-1, -1)),)
        self.outputs = (TensorDef("change_points", "INT64", (-1, -1)), TensorDef("count", "INT32", (-1, 1)))

    def _calls(self, tensors):
        return [SegmentCall(row) for row in _matrix(tensors, "series")]

    def encode(self, results):
        width = max((len(r.change_points) for r in results), default=0)
        points = np.full((len(results), width), -1, dtype=np.int64)
        for row, result in enumerate(results):
            points[row, :len(result.change_points)] = result.change_points
        return {"change_points": points, "count": _column([len(r.change_points) for r in results], np.int32)}


SIGNATURES: dict[str, type[Signature]] = {
    "predictor": PredictorSignature, "classifier": ClassifierSignature, "analyzer": AnalyzerSignature,
    "forecaster": ForecasterSignature, "segmenter": SegmenterSignature,
}


def signature_for(backend: ModelBackend) -> Signature:
    """The session's tensors: an imported model's own (kserve.imported), else the interface's above."""
    if isinstance(backend, ImportedBackend):
        from services.serving.kserve.imported import ModelTensorSignature  # builds on Signature: imported late

        return ModelTensorSignature(backend)
    return SIGNATURES[backend.interface](backend)
