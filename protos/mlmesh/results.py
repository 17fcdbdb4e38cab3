"""Typed results of the five interfaces and of a push, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prediction:
    values: tuple[float, ...]

    @property
    def value(self) -> float:
        """The first (for most regressors the only) output."""
        return self.values[0]


@dataclass(frozen=True)
class Classification:
    label: str
    probability: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Forecast:
    values: tuple[float, ...]


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    mean: float
    stddev: float


@dataclass(frozen=True)
class Segmentation:
    change_points: tuple[int, ...]
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Analysis:
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """A registered artifact: its content id, name and aliases, and what the mesh read from the model."""

    id: str
    name: str
    aliases: tuple[str, ...]
    framework: str
    format: str
    size: int
    interfaces: tuple[str, ...]
    interface: str
    metadata: dict = field(default_factory=dict, repr=False)
