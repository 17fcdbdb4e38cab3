"""Turning plain request values into float matrices: feature rows (in order or by name), series, texts."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.core.errors import InvalidArgument


def _is_single_row(features: Any) -> bool:
    if isinstance(features, Mapping):
        return True
    if isinstance(features, np.ndarray):
        return features.ndim == 1
    return bool(features) and isinstance(features[0], numbers.Number)


def feature_matrix(features: Any, names: Sequence[str], *, field: str = "rows") -> np.ndarray:
    """(rows, features) float64 from one row or a list of rows; a row is numbers in the model's feature
    order or a mapping name -> value (mapped through `names`: a missing or unknown name is refused)."""
    if type(features) is np.ndarray and features.size and features.ndim in (1, 2):  # tensors (KServe): no ABCs
        return _matrix(features.reshape(1, -1) if features.ndim == 1 else features, field)
    if type(features) is list and features:  # fast path for plain lists, the usual call (no ABC checks)
        first = type(features[0])
        if first is float or first is int:
            return _matrix([features], field)
        if first is list and all(type(row) is list for row in features):
            return _matrix(features, field)
    if isinstance(features, (str, bytes)) or not isinstance(features, (Sequence, Mapping, np.ndarray)):
        raise InvalidArgument("expected a row of numbers, a mapping of feature names, or a list of rows", field=field)
    rows = [features] if _is_single_row(features) else features
    if len(rows) == 0:
        raise InvalidArgument("no rows", field=field)
    if any(isinstance(row, Mapping) for row in rows):
        rows = [_named_row(row, names, f"{field}[{i}]") if isinstance(row, Mapping) else row
                for i, row in enumerate(rows)]
    return _matrix(rows, field)


def _matrix(rows: Any, field: str) -> np.ndarray:
    try:
        matrix = np.asarray(rows)
    except ValueError:
        raise InvalidArgument("rows must all have the same number of values", field=field) from None
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiub":
        raise InvalidArgument("each row must be a list of numbers of one length", field=field)
    return matrix.astype(np.float64, copy=False)


def _named_row(row: Mapping[str, Any], names: Sequence[str], field: str) -> list[Any]:
    if not names:
        raise InvalidArgument("this model does not name its features; pass values in order", field=field)
    unknown = [key for key in row if key not in names]
    if unknown:
        raise InvalidArgument(f"unknown feature {unknown[0]!r}; known: {list(names)}", field=f"{field}.{unknown[0]}")
    try:
        return [row[name] for name in names]
    except KeyError as missing:
        raise InvalidArgument(f"missing feature {missing.args[0]!r}", field=f"{field}.{missing.args[0]}") from None


def series_array(values: Any, *, field: str) -> np.ndarray:
    """A 1-D float64 series."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InvalidArgument("expected a list of numbers", field=field)
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "fiub":
        raise InvalidArgument("expected a flat list of numbers", field=field)
    if len(array) == 0:
        raise InvalidArgument("is empty", field=field)
    return array.astype(np.float64, copy=False)


def text_list(texts: Any, *, field: str) -> list[str]:
    """One text or a list of texts."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidArgument("expected a non-empty list of strings", field=field)
    return list(texts)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
