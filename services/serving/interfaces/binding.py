"""The interfaces over any call runner: `bind_interface(kind, run)` gives an object implementing that
interface's ABC whose methods build the typed call and hand it to `run(call, options)`.

A session binds its `infer` here; the gRPC client will bind a runner that sends the typed RPCs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.core.errors import InvalidArgument
from services.serving.interfaces.base import Analyzer, Classifier, Forecaster, Interface, Predictor, Segmenter
from services.serving.interfaces.calls import AnalyzeCall, Call, ClassifyCall, ForecastCall, PredictCall, SegmentCall
from services.serving.interfaces.results import CallOptions

CallRunner = Callable[[Call, CallOptions | None], Awaitable[Any]]


class _Bound:
    def __init__(self, run: CallRunner) -> None:
        self._run = run


class BoundPredictor(_Bound, Predictor):
    async def predict(self, features, *, options=None):
        return await self._run(PredictCall(features), options)


class BoundForecaster(_Bound, Forecaster):
    async def forecast(self, history: Sequence[float], horizon: int, *, options=None):
        return await self._run(ForecastCall(history, horizon), options)


class BoundClassifier(_Bound, Classifier):
    async def classify(self, data, *, options=None):
        return await self._run(ClassifyCall(data), options)


class BoundSegmenter(_Bound, Segmenter):
    async def segment(self, series: Sequence[float], *, options=None):
        return await self._run(SegmentCall(series), options)


class BoundAnalyzer(_Bound, Analyzer):
    async def analyze(self, texts, *, options=None):
        return await self._run(AnalyzeCall(texts), options)


_BOUND = {cls.kind: cls for cls in (BoundPredictor, BoundForecaster, BoundClassifier, BoundSegmenter, BoundAnalyzer)}


def bind_interface(kind: str, run: CallRunner) -> Interface:
    try:
        return _BOUND[kind](run)
    except KeyError:
        raise InvalidArgument(f"unknown interface {kind!r}; known: {sorted(_BOUND)}", field="interface") from None
