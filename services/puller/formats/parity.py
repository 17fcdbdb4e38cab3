"""Proving that a converted graph computes what the library computes (docs/byom.md "Parity rule").

max |served - native| <= 1e-4 x max(1, |native|) per value, and identical labels for classifiers, on the
reference sample, or without one on a sample made from the trees' own split thresholds: each feature
just below, at and just above each threshold (as float32, what the served input carries), the others
at the median of their thresholds. That is where a float32 graph flips a split if it is going to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-4
MAX_SAMPLE_ROWS = 4096
_MAX_THRESHOLDS_PER_FEATURE = 256


def native_outputs(values: np.ndarray, rows: int, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A library's predictions as parity compares them: (values [rows, K], labels or None). A binary
    classifier's one probability column becomes [1 - p, p], as the converted graph answers it."""
    values = np.asarray(values).reshape(rows, -1)
    if task != "classification":
        return values, None
    if values.shape[1] == 1:
        values = np.hstack([1.0 - values, values])
    return values, np.argmax(values, axis=1)


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    labels_identical: bool | None   # None: not a classifier
    ok: bool
    reason: str                     # why not ok ("" when ok)


def threshold_sample(thresholds: Mapping[int, set[float]], features: int) -> np.ndarray:
    """float32 rows around every split threshold (per feature: below, at and above it)."""
    per_feature = {f: np.unique(np.asarray(sorted(ts), dtype=np.float32)) for f, ts in thresholds.items()
                   if 0 <= f < features and ts}
    base = np.zeros(features, dtype=np.float32)
    for f, values in per_feature.items():
        base[f] = values[len(values) // 2]
    rows = [base.copy()]
    down, up = np.float32(-np.inf), np.float32(np.inf)
    for f, values in sorted(per_feature.items()):
        if len(values) > _MAX_THRESHOLDS_PER_FEATURE:
            values = values[np.linspace(0, len(values) - 1, _MAX_THRESHOLDS_PER_FEATURE).astype(int)]
        for t in values:
            for v in (np.nextafter(t, down), t, np.nextafter(t, up)):
                row = base.copy()
                row[f] = v
                rows.append(row)
    sample = np.stack(rows)
    if len(sample) > MAX_SAMPLE_ROWS:
        sample = sample[np.linspace(0, len(sample) - 1, MAX_SAMPLE_ROWS).astype(int)]
    return sample


def compare(native: np.ndarray, served: np.ndarray, *, native_labels: np.ndarray | None = None,
            served_labels: np.ndarray | None = None) -> Parity:
    """`native` / `served`: [rows, k] values (probabilities for a classifier)."""
    native = np.asarray(native, dtype=np.float64).reshape(len(native), -1)
    served = np.asarray(served, dtype=np.float64).reshape(len(served), -1)
    rows = int(native.shape[0])
    if native.shape != served.shape:
        return Parity(rows, 0.0, None, False, f"the converted graph returns shape {list(served.shape)}, the "
                      f"library {list(native.shape)}")
    if not (np.isfinite(native).all() and np.isfinite(served).all()):
        return Parity(rows, 0.0, None, False, "non-finite outputs on the parity sample")
    diff = np.abs(served - native)
    max_diff = float(diff.max()) if diff.size else 0.0
    within = bool((diff <= TOLERANCE * np.maximum(1.0, np.abs(native))).all())
    labels = None
    if native_labels is not None and served_labels is not None:
        labels = bool(np.array_equal(np.asarray(native_labels).reshape(-1).astype(np.int64),
                                     np.asarray(served_labels).reshape(-1).astype(np.int64)))
    reasons = []
    if not within:
        worst = int(np.argmax(diff.max(axis=1))) if diff.size else 0
        reasons.append(f"parity failed: max |served - native| = {max_diff:.3g} (row {worst}) exceeds "
                       f"{TOLERANCE:g} x max(1, |native|)")
    if labels is False:
        count = int((np.asarray(native_labels).reshape(-1) != np.asarray(served_labels).reshape(-1)).sum())
        reasons.append(f"labels differ on {count} of {rows} rows")
    return Parity(rows, max_diff, labels, not reasons, "; ".join(reasons))
