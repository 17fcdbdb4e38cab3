"""An autoregressive window forecaster (the LSTM or any one-step model over a fixed window).

`run` is ONE step: `window` (n, W) float32 -> `next` (n,). Horizons are iterated by the engine's
SequenceLoop (served) or by `direct` (in-process), each step appending its prediction to the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.core.errors import InvalidArgument
from services.serving.interfaces.backends.base import ModelBackend, Prepared
from services.serving.interfaces.backends.features import series_array
from services.serving.interfaces.backends.runtimes import Runtime
from services.serving.interfaces.base import Forecaster
from services.serving.interfaces.calls import ForecastCall
from services.serving.interfaces.results import Forecast
from services.serving.rules.view import FeatureView, ModelInfo

MAX_HORIZON = 4096


class WindowForecaster(ModelBackend, Forecaster):
    interface = "forecaster"
    autoregressive = True

    def __init__(self, runtime: Runtime, *, artifact_id: str, metadata: Mapping[str, Any] | None = None,
                 max_horizon: int = MAX_HORIZON) -> None:
        super().__init__(artifact_id=artifact_id, metadata=metadata)
        self.runtime = runtime
        self.window = int(self.architecture.get("window", 32))
        self.max_horizon = max_horizon

    @property
    def uses_torch(self) -> bool:  # type: ignore[override]
        return self.runtime.uses_torch

    @cached_property
    def info(self) -> ModelInfo:
        names = tuple(self.metadata.get("feature_names") or ("value",))[:1]
        return ModelInfo(names, self.feature_stats(), 1)

    def preprocess(self, call: ForecastCall) -> Prepared:
        history = series_array(call.history, field="history")
        horizon = call.horizon
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or not 1 <= horizon <= self.max_horizon:
            raise InvalidArgument(f"must be an integer from 1 to {self.max_horizon}", field="horizon")
        if len(history) < self.window:
            raise InvalidArgument(f"needs at least {self.window} values (the model's window), got {len(history)}",
                                  field="history")
        window = history[-self.window:].astype(np.float32)[None, :]
        return Prepared({"window": window}, 1, FeatureView(history[:, None], self.info.feature_names, "history"),
                        steps=int(horizon))

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"next": np.asarray(self.runtime(batch["window"]), dtype=np.float32).reshape(-1)}

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> Forecast:
        return Forecast(tuple(np.asarray(outputs["next"]).reshape(-1).tolist()))

    async def direct(self, call: ForecastCall) -> Forecast:
        prepared = self.preprocess(call)
        window = prepared.inputs["window"]
        values = np.empty(prepared.steps, dtype=np.float32)
        for step in range(prepared.steps):
            values[step] = self.run({"window": window})["next"][0]
            window = np.concatenate([window[:, 1:], values[None, step:step + 1]], axis=1)
        return self.postprocess(prepared, {"next": values})

    async def forecast(self, history, horizon, *, options=None) -> Forecast:
        return await self.direct(ForecastCall(history, horizon))
