"""Stacking per-request rows into one batch and splitting the batch's outputs back by row counts."""

from __future__ import annotations

import numpy as np

from services.serving.engine.request import Request


def assemble(requests: list[Request]) -> dict[str, np.ndarray]:
    """Every input of `requests` concatenated along axis 0, in request order."""
    if len(requests) == 1:
        return requests[0].inputs
    first = requests[0].inputs
    return {key: np.concatenate([r.inputs[key] for r in requests]) for key in first}


def check_outputs(outputs: dict[str, np.ndarray], rows: int) -> None:
    """A batch's outputs must have one row per input row; anything else is a model or executor bug."""
    for key, value in outputs.items():
        if len(value) != rows:
            raise RuntimeError(f"executor output {key!r} has {len(value)} rows for a batch of {rows}")


def split(outputs: dict[str, np.ndarray], requests: list[Request]) -> list[dict[str, np.ndarray]]:
    """Each request's own output rows (views into the batch's arrays; no copies)."""
    if len(requests) == 1:
        return [outputs]
    parts, offset = [], 0
    for request in requests:
        end = offset + request.rows
        parts.append({key: value[offset:end] for key, value in outputs.items()})
        offset = end
    return parts
