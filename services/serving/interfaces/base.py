"""The five agent-facing interfaces. Agents program against these whatever backs them: a local model
backend, a served session (rules + batching), or a gRPC client of the Serving service."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from services.serving.interfaces.calls import Row
from services.serving.interfaces.results import (
    Analysis,
    CallOptions,
    Classification,
    Forecast,
    Prediction,
    Segmentation,
)


class Interface(ABC):
    kind: ClassVar[str]


class Predictor(Interface):
    """Point-in-time value estimation: one Prediction per feature row."""

    kind = "predictor"

    @abstractmethod
    async def predict(self, features: Row | Sequence[Row], *, options: CallOptions | None = None) -> list[Prediction]:
        ...


class Forecaster(Interface):
    """Multi-step temporal projection: `horizon` values after `history`."""

    kind = "forecaster"

    @abstractmethod
    async def forecast(self, history: Sequence[float], horizon: int, *, options: CallOptions | None = None) -> Forecast:
        ...


class Classifier(Interface):
    """Discrete probability distribution per feature row (or per text, for text classifiers)."""

    kind = "classifier"

    @abstractmethod
    async def classify(self, data: Row | Sequence[Row] | Sequence[str], *,
                       options: CallOptions | None = None) -> list[Classification]:
        ...


class Segmenter(Interface):
    """Structural-break detection: change points and the segments between them."""

    kind = "segmenter"

    @abstractmethod
    async def segment(self, series: Sequence[float], *, options: CallOptions | None = None) -> Segmentation:
        ...


class Analyzer(Interface):
    """NLP / sentiment scoring: one Analysis per text."""

    kind = "analyzer"

    @abstractmethod
    async def analyze(self, texts: Sequence[str] | str, *, options: CallOptions | None = None) -> list[Analysis]:
        ...


INTERFACE_CLASSES: tuple[type[Interface], ...] = (Predictor, Forecaster, Classifier, Segmenter, Analyzer)
INTERFACE_KINDS: tuple[str, ...] = tuple(c.kind for c in INTERFACE_CLASSES)
