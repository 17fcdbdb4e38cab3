"""What every backend of an imported model shares: its runtime, its signature, its column names and the
tensor names its batch function uses.

The batch function speaks the MODEL'S OWN tensor names (`batch_inputs`: backend key -> model input,
`batch_outputs`: model output -> backend key; the identity except for the forecaster, whose steps the
engine's SequenceLoop runs as `window` -> `next`), so a Triton entry of the graph needs no renaming.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.backends.imported.signature import ModelSignature
from services.serving.rules.view import FeatureView


def declared_names(metadata: Mapping[str, Any], width: int) -> tuple[str, ...]:
    """`metadata.feature_names` (one per input column), or () when the model names none."""
    names = metadata.get("feature_names")
    if names is None or names == []:
        return ()
    if not isinstance(names, list) or len(names) != width or len(set(map(str, names))) != width:
        raise FailedPrecondition(f"feature_names must name each of the {width} input columns once",
                                 field="metadata.feature_names")
    return tuple(str(n) for n in names)


def display_labels(metadata: Mapping[str, Any], signature: ModelSignature) -> tuple[str, ...]:
    """`metadata.class_labels` (one per class, in probability order), else the model's own classes."""
    labels = metadata.get("class_labels")
    if labels is None or labels == []:
        return signature.classes
    if not isinstance(labels, list) or len(labels) != len(signature.classes):
        raise FailedPrecondition(f"class_labels must name each of the {len(signature.classes)} classes "
                                 f"{list(signature.classes)}", field="metadata.class_labels")
    return tuple(str(label) for label in labels)


class ImportedBackend(ModelBackend):
    """A backend over an imported runtime (ImportedOnnxRuntime, XGBoostRuntime, LightGBMRuntime)."""

    def __init__(self, runtime: Any, signature: ModelSignature, *, artifact_id: str,
                 metadata: Mapping[str, Any] | None = None) -> None:
        # ModelBackend's own, not the next class's in a subclass's MRO (WindowForecaster for the forecaster)
        ModelBackend.__init__(self, artifact_id=artifact_id, metadata=metadata)
        self.runtime = runtime
        self.signature = signature
        self.input = signature.input
        self.batch_inputs: dict[str, str] = {self.input.name: self.input.name}
        self.batch_outputs: dict[str, str] = {t.name: t.name for t in self.output_tensors()}

    def output_tensors(self) -> tuple:
        """The model outputs this interface reads (and a Triton entry lists)."""
        return self.signature.outputs

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runtime(batch)


def cast_rows(values: np.ndarray, dtype: np.dtype, field: str) -> np.ndarray:
    """Float64 request rows in the input's dtype; an integer input refuses values with a fraction."""
    if dtype.kind in "iub" and not np.array_equal(values, np.round(values)):
        row = int(np.argwhere(values != np.round(values))[0][0])
        raise InvalidArgument(f"this model takes {dtype} values; the row has a fraction", field=f"{field}[{row}]")
    return values.astype(dtype, copy=False)


def check_width(view: FeatureView, width: int) -> None:
    """What TensorShapeGuard says in a session, for calls served by the backend alone (`direct`)."""
    if view.values.shape[1] != width:
        raise InvalidArgument(f"expected {width} features per row, got {view.values.shape[1]}", field=view.field)
