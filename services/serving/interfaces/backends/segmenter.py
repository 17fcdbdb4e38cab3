"""An algorithmic change-point Segmenter: binary segmentation on mean shifts with a penalty.

Greedy and deterministic: repeatedly split the segment whose best split lowers the squared error the
most, while that gain exceeds the penalty. The default penalty is `penalty_scale * sigma^2 * log(n)`,
with sigma estimated robustly from first differences (so level shifts do not inflate it).
One request is one row: `series` is an object array of 1-D float arrays; `change_points` likewise.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.serving.interfaces.backends.base import ModelBackend, Prepared
from services.serving.interfaces.backends.features import series_array
from services.serving.interfaces.base import Segmenter
from services.serving.interfaces.calls import SegmentCall
from services.serving.interfaces.results import Segment, Segmentation
from services.serving.rules.view import FeatureView, ModelInfo


def _best_split(s1: np.ndarray, s2: np.ndarray, start: int, end: int, min_size: int) -> tuple[float, int]:
    """(gain, index) of the best split of [start, end) by squared error, from prefix sums s1, s2."""
    ks = np.arange(start + min_size, end - min_size + 1)
    if len(ks) == 0:
        return 0.0, -1

    def sse(a, b):
        return (s2[b] - s2[a]) - (s1[b] - s1[a]) ** 2 / (b - a)

    gains = sse(start, end) - sse(start, ks) - sse(ks, end)
    best = int(np.argmax(gains))
    return float(gains[best]), int(ks[best])


def binary_segmentation(x: np.ndarray, *, penalty: float | None = None, penalty_scale: float = 3.0,
                        min_size: int = 2, max_change_points: int = 64) -> list[int]:
    """Indices where new segments start, ascending."""
    n = len(x)
    if n < 2 * min_size:
        return []
    if penalty is None:
        diffs = np.diff(x)
        sigma = float(np.median(np.abs(diffs - np.median(diffs)))) / 0.6745 / np.sqrt(2.0)
        floor = 1e-9 * (1.0 + float(np.var(x)))  # a noiseless series: split only where the mean really moves
        penalty = max(penalty_scale * sigma * sigma * np.log(n), floor)
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])
    candidates = {(0, n): _best_split(s1, s2, 0, n, min_size)}
    points: list[int] = []
    while candidates and len(points) < max_change_points:
        (start, end), (gain, k) = max(candidates.items(), key=lambda item: (item[1][0], -item[0][0]))
        if k < 0 or gain <= penalty:
            break
        del candidates[(start, end)]
        points.append(k)
        for part in ((start, k), (k, end)):
            candidates[part] = _best_split(s1, s2, part[0], part[1], min_size)
    return sorted(points)


class ChangePointSegmenter(ModelBackend, Segmenter):
    interface = "segmenter"

    def __init__(self, *, artifact_id: str = "algorithmic:binary_segmentation",
                 metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(artifact_id=artifact_id, metadata=metadata)
        params = self.metadata.get("parameters") or {}
        self.penalty = params.get("penalty")
        self.penalty_scale = float(params.get("penalty_scale", 3.0))
        self.min_size = int(params.get("min_size", 2))
        self.max_change_points = int(params.get("max_change_points", 64))

    @cached_property
    def info(self) -> ModelInfo:
        return ModelInfo(("value",), self.feature_stats(), 1)

    def preprocess(self, call: SegmentCall) -> Prepared:
        series = series_array(call.series, field="series")
        holder = np.empty(1, dtype=object)
        holder[0] = series
        return Prepared({"series": holder}, 1, FeatureView(series[:, None], ("value",), "series"), context=series)

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(batch["series"]), dtype=object)
        for i, series in enumerate(batch["series"]):
            out[i] = np.asarray(binary_segmentation(series, penalty=self.penalty, penalty_scale=self.penalty_scale,
                                                    min_size=self.min_size,
                                                    max_change_points=self.max_change_points), dtype=np.int64)
        return {"change_points": out}

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> Segmentation:
        series, points = prepared.context, [int(p) for p in outputs["change_points"][0]]
        bounds = [0, *points, len(series)]
        segments = tuple(Segment(a, b, float(series[a:b].mean()), float(series[a:b].std()))
                         for a, b in zip(bounds, bounds[1:]))
        return Segmentation(tuple(points), segments)

    async def segment(self, series, *, options=None) -> Segmentation:
        return await self.direct(SegmentCall(series))
