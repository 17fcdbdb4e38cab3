"""One typed call per interface: what a servicer builds from a proto request and a session serves.

Feature rows are a list of numbers in the model's feature order or a mapping feature name -> value;
`features` may be one row or a list of rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

Row = Sequence[float] | Mapping[str, float]


@dataclass(frozen=True, slots=True)
class PredictCall:
    interface: ClassVar[str] = "predictor"
    features: Row | Sequence[Row]
    field: str = "rows"               # what the caller calls the rows: errors name it (KServe: the tensor)


@dataclass(frozen=True, slots=True)
class ForecastCall:
    interface: ClassVar[str] = "forecaster"
    history: Sequence[float]          # oldest first
    horizon: int


@dataclass(frozen=True, slots=True)
class ClassifyCall:
    interface: ClassVar[str] = "classifier"
    data: Row | Sequence[Row] | Sequence[str]   # feature rows, or texts for a text classifier
    field: str = "rows"               # what the caller calls the rows: errors name it (KServe: the tensor)


@dataclass(frozen=True, slots=True)
class SegmentCall:
    interface: ClassVar[str] = "segmenter"
    series: Sequence[float]


@dataclass(frozen=True, slots=True)
class AnalyzeCall:
    interface: ClassVar[str] = "analyzer"
    texts: Sequence[str] | str


Call = PredictCall | ForecastCall | ClassifyCall | SegmentCall | AnalyzeCall
CALLS: dict[str, Any] = {c.interface: c for c in (PredictCall, ForecastCall, ClassifyCall, SegmentCall, AnalyzeCall)}
