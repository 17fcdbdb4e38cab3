"""Predictor and Classifier over an imported model's feature rows.

Rows are numbers in the model's column order or mappings by `metadata.feature_names` (feature_matrix:
an unknown or missing name is refused), cast to the input's dtype: `{input: (rows, F)}`. The predictor
answers the signature's `value_output`; the classifier ranks `probability_output` [-1, C] under
`class_labels`, and where the model also answers a label, that label must be the most probable class.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.interfaces.backends.features import feature_matrix
from services.serving.interfaces.backends.imported.base import (
    ImportedBackend, cast_rows, check_width, declared_names, display_labels,
)
from services.serving.interfaces.backends.imported.signature import ModelSignature, series_name, window_columns
from services.serving.interfaces.backends.base import Prepared
from services.serving.interfaces.backends.tabular import ranked_classifications
from services.serving.interfaces.base import Classifier, Predictor
from services.serving.interfaces.calls import ClassifyCall, PredictCall
from services.serving.interfaces.results import Classification, Prediction
from services.serving.rules.view import FeatureView, ModelInfo


class ImportedTabular(ImportedBackend):
    def __init__(self, runtime: Any, signature: ModelSignature, *, artifact_id: str,
                 metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(runtime, signature, artifact_id=artifact_id, metadata=metadata)
        self.expected_features = signature.width
        if signature.kind == "series":  # a predictor over window rows: columns "value[0]" .. "value[W-1]"
            self.feature_names = window_columns(series_name(self.metadata), signature.width)
        else:
            self.feature_names = declared_names(self.metadata, self.expected_features)
        self._dtype = self.input.numpy_dtype

    @cached_property
    def info(self) -> ModelInfo:
        names = self.feature_names or tuple(f"f{i}" for i in range(self.expected_features))
        return ModelInfo(names, self.feature_stats(), self.expected_features)

    def _prepare_rows(self, features: Any, field: str) -> Prepared:
        values = feature_matrix(features, self.feature_names, field=field)
        view = FeatureView(values, self.info.feature_names, field)
        return Prepared({self.input.name: cast_rows(values, self._dtype, field)}, len(values), view)

    async def direct(self, call: Any) -> Any:
        prepared = self.preprocess(call)
        check_width(prepared.view, self.expected_features)
        return self.postprocess(prepared, self.run(prepared.inputs))


class ImportedPredictor(ImportedTabular, Predictor):
    interface = "predictor"

    def output_tensors(self) -> tuple:
        return (self.signature.output(self.signature.value_output),)

    def preprocess(self, call: PredictCall) -> Prepared:
        return self._prepare_rows(call.features, call.field)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Prediction]:
        values = np.asarray(outputs[self.signature.value_output], dtype=np.float64).reshape(prepared.rows, -1)
        return [Prediction(tuple(row)) for row in values.tolist()]

    async def predict(self, features, *, options=None) -> list[Prediction]:
        return await self.direct(PredictCall(features))


class ClassOutputs:
    """A classifier's probability tensor (and label tensor, when the model answers one) -> ranked
    classifications under the display labels; shared by the tabular and the text classifiers."""

    def __init__(self, metadata: Mapping[str, Any], signature: ModelSignature) -> None:
        self.signature = signature
        self.labels = display_labels(metadata, signature)
        self.class_index = {c: i for i, c in enumerate(signature.classes)}

    def tensors(self) -> tuple:
        names = [self.signature.probability_output] + ([self.signature.label_output]
                                                        if self.signature.label_output else [])
        return tuple(self.signature.output(n) for n in names)

    def probabilities(self, outputs: dict[str, np.ndarray], rows: int) -> np.ndarray:
        probabilities = np.asarray(outputs[self.signature.probability_output], dtype=np.float64).reshape(rows, -1)
        if probabilities.shape[1] != len(self.labels):
            raise FailedPrecondition(f"the model answered {probabilities.shape[1]} probabilities for "
                                     f"{len(self.labels)} classes", field="model")
        if self.signature.label_output:
            self._check_labels(outputs[self.signature.label_output], probabilities)
        return probabilities

    def _check_labels(self, labels: np.ndarray, probabilities: np.ndarray) -> None:
        rows = len(probabilities)
        distinct, inverse = np.unique(np.asarray(labels).reshape(rows), return_inverse=True)
        columns = []
        for value in distinct.tolist():
            key = value.decode() if isinstance(value, bytes) else str(
                int(value) if isinstance(value, float) and value.is_integer() else value)
            if key not in self.class_index:
                raise FailedPrecondition(f"the model answered label {key!r}, not one of its classes "
                                         f"{list(self.class_index)}", field="model")
            columns.append(self.class_index[key])
        chosen = probabilities[np.arange(rows), np.asarray(columns)[inverse.reshape(rows)]]
        best = probabilities.max(axis=1)
        wrong = np.flatnonzero(chosen < best - 1e-6 * np.maximum(1.0, np.abs(best)))  # a tie may pick either
        if wrong.size:
            raise FailedPrecondition(f"the model's label is not its most probable class (row {int(wrong[0])})",
                                     field="model")

    def ranked(self, outputs: dict[str, np.ndarray], rows: int) -> list[Classification]:
        return ranked_classifications(self.probabilities(outputs, rows), self.labels)


class ImportedClassifier(ImportedTabular, Classifier):
    interface = "classifier"

    def __init__(self, runtime: Any, signature: ModelSignature, *, artifact_id: str,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.classes = ClassOutputs(metadata or {}, signature)
        super().__init__(runtime, signature, artifact_id=artifact_id, metadata=metadata)
        self.labels = self.classes.labels

    def output_tensors(self) -> tuple:
        return self.classes.tensors()

    def preprocess(self, call: ClassifyCall) -> Prepared:
        data = call.data
        if isinstance(data, str) or (isinstance(data, list) and data and isinstance(data[0], str)):
            raise InvalidArgument("this classifier takes feature rows, not texts", field="texts")
        return self._prepare_rows(data, call.field)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Classification]:
        return self.classes.ranked(outputs, prepared.rows)

    async def classify(self, data, *, options=None) -> list[Classification]:
        return await self.direct(ClassifyCall(data))
