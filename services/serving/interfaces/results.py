"""Plain results of the five interfaces, and per-call options. Plain values in, plain dataclasses out:
the same ABCs are implemented by local backends, served sessions and (later) a gRPC client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CallOptions:
    priority: int = 0                 # higher runs first; 0 is normal
    timeout_s: float | None = None    # the caller's deadline, relative; None waits as long as it takes
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Prediction:
    values: tuple[float, ...]

    @property
    def value(self) -> float:
        return self.values[0]


@dataclass(frozen=True, slots=True)
class Forecast:
    values: tuple[float, ...]         # one per step of the horizon


@dataclass(frozen=True, slots=True)
class Classification:
    label: str
    probability: float
    scores: Mapping[str, float] = field(default_factory=dict)   # every label's probability


@dataclass(frozen=True, slots=True)
class Segment:
    start: int                        # inclusive index
    end: int                          # exclusive index
    mean: float
    stddev: float


@dataclass(frozen=True, slots=True)
class Segmentation:
    change_points: tuple[int, ...]    # index where each new segment starts
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Analysis:
    label: str
    score: float                      # signed sentiment in [-1, 1] when the labels allow it, else the label's probability
    scores: Mapping[str, float] = field(default_factory=dict)
