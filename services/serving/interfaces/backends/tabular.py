"""Tabular backends (an MLP or any rows -> outputs runtime): Predictor and Classifier over feature rows.

Input tensor `input` (rows, features) float32; output `output` (rows, outputs): values or logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.core.errors import InvalidArgument
from services.serving.interfaces.backends.base import ModelBackend, Prepared
from services.serving.interfaces.backends.features import feature_matrix, softmax
from services.serving.interfaces.backends.runtimes import Runtime
from services.serving.interfaces.base import Classifier, Predictor
from services.serving.interfaces.calls import ClassifyCall, PredictCall
from services.serving.interfaces.results import Classification, Prediction
from services.serving.rules.view import FeatureView, ModelInfo


class TabularBackend(ModelBackend):
    def __init__(self, runtime: Runtime, *, artifact_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(artifact_id=artifact_id, metadata=metadata)
        self.runtime = runtime
        self.feature_names: tuple[str, ...] = tuple(self.metadata.get("feature_names") or ())
        layers = self.architecture.get("layers")
        width = len(self.feature_names) or (int(layers[0]) if isinstance(layers, list) and layers else 0)
        self.expected_features = width or None

    @property
    def uses_torch(self) -> bool:  # type: ignore[override]
        return self.runtime.uses_torch

    @cached_property
    def info(self) -> ModelInfo:
        names = self.feature_names or tuple(f"f{i}" for i in range(self.expected_features or 0))
        return ModelInfo(names, self.feature_stats(), self.expected_features)

    def _prepare_rows(self, features: Any, field: str) -> Prepared:
        values = feature_matrix(features, self.feature_names, field=field)
        view = FeatureView(values, self.info.feature_names, field)
        return Prepared({"input": values.astype(np.float32)}, len(values), view)

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"output": np.asarray(self.runtime(batch["input"]), dtype=np.float32)}


class TabularPredictor(TabularBackend, Predictor):
    interface = "predictor"

    def preprocess(self, call: PredictCall) -> Prepared:
        return self._prepare_rows(call.features, call.field)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Prediction]:
        return [Prediction(tuple(row)) for row in outputs["output"].reshape(prepared.rows, -1).tolist()]

    async def predict(self, features, *, options=None) -> list[Prediction]:
        return await self.direct(PredictCall(features))


def classifications(logits: np.ndarray, labels: tuple[str, ...]) -> list[Classification]:
    """Logits (rows, classes) -> the most probable label per row with every label's probability."""
    return ranked_classifications(softmax(logits.astype(np.float64)), labels)


def ranked_classifications(probabilities: np.ndarray, labels: tuple[str, ...]) -> list[Classification]:
    """Probabilities (rows, classes) -> the most probable label per row with every label's probability."""
    best = probabilities.argmax(axis=1)
    return [Classification(labels[b], row[b], dict(zip(labels, row)))
            for b, row in zip(best.tolist(), probabilities.tolist())]


class TabularClassifier(TabularBackend, Classifier):
    interface = "classifier"

    def __init__(self, runtime: Runtime, *, artifact_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(runtime, artifact_id=artifact_id, metadata=metadata)
        labels = self.metadata.get("class_labels")
        if not isinstance(labels, list) or not labels:
            raise InvalidArgument("a classifier needs metadata.class_labels", field="metadata.class_labels")
        self.labels = tuple(str(label) for label in labels)

    def preprocess(self, call: ClassifyCall) -> Prepared:
        data = call.data
        if isinstance(data, str) or (isinstance(data, list) and data and isinstance(data[0], str)):
            raise InvalidArgument("this classifier takes feature rows, not texts", field="texts")
        return self._prepare_rows(data, call.field)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Classification]:
        return classifications(outputs["output"], self.labels)

    async def classify(self, data, *, options=None) -> list[Classification]:
        return await self.direct(ClassifyCall(data))
