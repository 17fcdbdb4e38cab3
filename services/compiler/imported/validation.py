"""Parity of a compiled imported graph with its source graph, both run under ONNX Runtime.

The sample: the artifact's reference sample (`reference.npy`, float64, read with allow_pickle=False) when
it has one, cast to the input's dtype; at the largest batch size every row is checked, at the smaller
ones the first REFERENCE_BATCHES batches. Without one, batches are drawn the way validation.py draws
them for torch models (around metadata.training_stats, else standard normal) at the same batch sizes,
rounded for an integer input.

Metrics and thresholds are validation.py's (max_abs_error / max_rel_error against the compiler's
tolerance for the target, the policy's overrides and warn_only), over every floating output; positions
where both graphs give the same non-finite value (a NaN in, a NaN out) are not errors. Integer and
string outputs (labels) are not judged by tolerance: accuracy_delta is the larger of the fraction of
rows whose label changed and the first floating output's change (top class for classifiers, relative
mean absolute change otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.compiler.compilers.base import Tolerance
from services.compiler.signature import ModelSignature, sample_inputs
from services.compiler.validation import ValidationPolicy, accuracy_delta, batch_errors, does_not_run, verdict
from services.core.errors import FailedPrecondition

REFERENCE_BATCHES = 8
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

Run = Callable[[np.ndarray], dict[str, np.ndarray]]


def load_reference(path: Path, signature: ModelSignature, label: str = "reference.npy") -> np.ndarray | None:
    """The reference rows in the input's dtype (None when the sample is empty)."""
    try:
        sample = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise FailedPrecondition(f"{label} is not a plain .npy array: {exc}"[:400], field="metadata.reference.file") from None
    dims = signature.input.dims
    if not isinstance(sample, np.ndarray) or not np.issubdtype(sample.dtype, np.number) \
            or sample.shape[1:] != dims or sample.ndim != 1 + len(dims):
        raise FailedPrecondition(f"{label} holds {getattr(sample, 'dtype', '?')} rows of shape "
                                 f"{getattr(sample, 'shape', ())[1:]}, the graph's input takes rows of {dims}",
                                 field="metadata.reference.file")
    dtype = np.dtype(signature.input.dtype)
    if dtype.kind != "f":  # integer features recorded as float64
        if not np.isfinite(sample).all():
            raise FailedPrecondition(f"{label} has non-finite values for the graph's {dtype} input",
                                     field="metadata.reference.file")
        sample = np.rint(sample)
    return sample.astype(dtype) if len(sample) else None


def graph_batches(signature: ModelSignature, policy: ValidationPolicy, reference: np.ndarray | None,
                  seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """(batch size, batch) pairs; see the module's docstring for which rows."""
    dtype = np.dtype(signature.input.dtype)
    if reference is None:
        draw = (lambda x: x) if dtype.kind == "f" else np.rint  # integer features: the nearest integers
        return [(size, draw(sample_inputs(signature, size, seed + size)).astype(dtype)) for size in policy.batch_sizes]
    batches = []
    largest = max(policy.batch_sizes)
    for size in policy.batch_sizes:
        starts = range(0, len(reference), size)
        for start in starts if size == largest else list(starts)[:REFERENCE_BATCHES]:
            batches.append((size, np.ascontiguousarray(reference[start:start + size])))
    return batches


def _floating(name: str, size: int, want: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if got.shape == want.shape:
        same = ~np.isfinite(want) & ~np.isfinite(got) & ((np.isnan(want) & np.isnan(got)) | (want == got))
        want, got = np.where(same, 0.0, want), np.where(same, 0.0, got)
        if not np.isfinite(want).all():
            raise FailedPrecondition(f"at batch {size} output {name!r} of the source graph has non-finite values "
                                     "where the compiled graph's has other values", field="validation")
    return batch_errors(size, want, got, what=f"output {name!r}", against="the source graph")


def validate_graph(make_source: Callable[[], Run], make_compiled: Callable[[], Run], signature: ModelSignature,
                   batches: Sequence[tuple[int, np.ndarray]], policy: ValidationPolicy,
                   tolerance: Tolerance) -> dict[str, Any]:
    """ValidationMetrics as a dict; FailedPrecondition when over tolerance (unless warn_only)."""
    try:
        source = make_source()
        expected = [source(x) for _, x in batches]
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise FailedPrecondition(f"the imported graph does not run on the validation sample: {type(exc).__name__}: "
                                 f"{first[0] if first else ''}"[:600], field="artifact") from None
    try:
        compiled = make_compiled()
        actual = [compiled(x) for _, x in batches]
    except Exception as exc:
        raise does_not_run(exc) from None
    names = [t.name for t in signature.outputs]
    floating = [t.name for t in signature.outputs if t.dtype in FLOAT_DTYPES]
    max_abs = max_rel = 0.0
    changed = rows = 0
    for (size, _), want, got in zip(batches, expected, actual):
        if sorted(got) != sorted(names):
            raise FailedPrecondition(f"the compiled graph's outputs are {sorted(got)}, the source's {sorted(names)}",
                                     field="validation")
        for name in names:
            if name in floating:
                diff, rel = _floating(name, size, want[name], got[name])
                max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
            elif np.shape(got[name]) != np.shape(want[name]):
                raise FailedPrecondition(f"at batch {size} output {name!r} has shape {np.shape(got[name])}, the "
                                         f"source graph {np.shape(want[name])}", field="validation")
            else:
                differs = np.asarray(got[name]) != np.asarray(want[name])
                changed += int(differs.reshape(len(differs), -1).any(axis=1).sum()) if differs.size else 0
                rows += len(differs)
    delta = changed / rows if rows else 0.0
    if floating:
        main = floating[0]
        delta = max(delta, accuracy_delta([np.asarray(w[main], np.float32) for w in expected],
                                          [g[main] for g in actual], signature.classification))
    return {**verdict(policy, tolerance, max_abs, max_rel), "accuracy_delta": delta}
