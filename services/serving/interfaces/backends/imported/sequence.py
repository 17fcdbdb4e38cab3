"""A Forecaster over an imported window model: input [-1, W] -> one value per row (`value_output`).

Like WindowForecaster, `run` is ONE step under the engine's names (`window` (n, W) -> `next` (n,)), so
the scheduler's SequenceLoop iterates horizons with iteration-level batching whatever the executor;
`batch_inputs` / `batch_outputs` map those names onto the model's own for a Triton entry. The rules see
the history as one column, `value`, whose statistics serving_metadata pools from the per-position ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition
from services.serving.interfaces.backends.forecaster import MAX_HORIZON, WindowForecaster
from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.imported.signature import ModelSignature, series_name
from services.serving.rules.view import ModelInfo


class ImportedForecaster(ImportedBackend, WindowForecaster):
    interface = "forecaster"
    autoregressive = True

    def __init__(self, runtime: Any, signature: ModelSignature, *, artifact_id: str,
                 metadata: Mapping[str, Any] | None = None) -> None:
        ImportedBackend.__init__(self, runtime, signature, artifact_id=artifact_id, metadata=metadata)
        self.window = signature.width
        self.max_horizon = MAX_HORIZON
        declared = self.metadata.get("window")
        if isinstance(declared, (int, float)) and not isinstance(declared, bool) and int(declared) != self.window:
            raise FailedPrecondition(f"window {declared} differs from the input's width {self.window}",
                                     field="metadata.window")
        self.batch_inputs = {"window": self.input.name}
        self.batch_outputs = {signature.value_output: "next"}
        self._dtype = self.input.numpy_dtype

    def output_tensors(self) -> tuple:
        return (self.signature.output(self.signature.value_output),)

    @property
    def uses_torch(self) -> bool:  # type: ignore[override]
        return False

    @cached_property
    def info(self) -> ModelInfo:
        return ModelInfo((series_name(self.metadata),), self.feature_stats(), 1)

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        window = batch["window"]
        outputs = self.runtime({self.input.name: window.astype(self._dtype, copy=False)})
        return {"next": np.asarray(outputs[self.signature.value_output], dtype=np.float32).reshape(len(window))}
