"""ModelBackend: how one model kind serves one interface, in three parts the engine can batch across:

- `preprocess(call) -> Prepared`: on the event loop, per request: the model's input rows (arrays whose
  first dimension is `rows`), the numeric view the rules check, and what postprocess needs back;
- `run(batch) -> outputs`: the batch function an Executor runs (inputs stacked along axis 0);
- `postprocess(prepared, outputs) -> result`: the request's own output rows -> a typed result.

A backend also implements its interface's ABC directly (`direct`: no rules, no batching), which is how
a model is called in-process and the reference a served answer is compared against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from services.serving.rules.view import FeatureView, ModelInfo


@dataclass(slots=True)
class Prepared:
    inputs: dict[str, np.ndarray]
    rows: int                         # first dimension of every input; counts against max_batch_size
    view: FeatureView | None          # what rules check; None when there is nothing numeric
    steps: int = 1                    # autoregressive steps (forecast horizon)
    context: Any = None               # anything postprocess needs (labels, the series, ...)


class ModelBackend(ABC):
    interface: ClassVar[str]
    autoregressive: ClassVar[bool] = False   # run by a SequenceLoop: `run` is one step
    uses_torch: ClassVar[bool] = False       # the executor sets torch threads and inference_mode

    def __init__(self, *, artifact_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        self.artifact_id = artifact_id
        self.metadata: Mapping[str, Any] = metadata or {}

    @property
    def architecture(self) -> Mapping[str, Any]:
        return self.metadata.get("architecture") or {}

    @property
    def in_process_only(self) -> str:
        """Why this backend's batch function cannot run on Triton ("" when it can); executor placement
        reads it, so `auto` falls back to in-process and an explicit Triton request is refused with it."""
        return str(getattr(getattr(self, "runtime", None), "in_process_only", ""))

    @property
    @abstractmethod
    def info(self) -> ModelInfo:
        """Column names of the views this backend builds, their training statistics, the expected width."""

    @abstractmethod
    def preprocess(self, call: Any) -> Prepared: ...

    @abstractmethod
    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> Any: ...

    async def direct(self, call: Any) -> Any:
        """The call served by this backend alone, inline: no rules, no batching."""
        prepared = self.preprocess(call)
        return self.postprocess(prepared, self.run(prepared.inputs))

    def feature_stats(self) -> Mapping[str, Mapping[str, float]]:
        stats = self.metadata.get("feature_stats")
        return stats if isinstance(stats, Mapping) else {}
