"""What rules look at: a numeric view of one request and the facts about the model it is checked against.

Backends build the view (tabular rows, a forecast history, a series, text lengths) so rules stay
independent of interfaces and run on one float matrix with numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class FeatureView:
    values: np.ndarray            # float64, (rows, features)
    names: Sequence[str]          # one per column, as the model names them
    field: str = "rows"           # the request field the rows came from, for error fields

    def at(self, row: int) -> str:
        return f"{self.field}[{row}]"

    def name(self, col: int) -> str:
        # A request may be wider than the model (the shape guard says so); name such columns by index.
        return self.names[col] if col < len(self.names) else f"column {col}"


@dataclass(frozen=True)
class ModelInfo:
    """The model facts a rule binds to: column names, their training statistics, the expected width."""

    feature_names: Sequence[str]
    feature_stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    expected_features: int | None = None


def fmt(value: float) -> str:
    """Numbers in rule messages: short, and nan/inf spelled as such."""
    return f"{value:.4g}" if np.isfinite(value) else str(value)
