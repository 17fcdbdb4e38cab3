"""Parity of a compiled output with the eager fp32 model.

The output is loaded back the way a server would load it (ONNX Runtime, torch.jit.load,
aoti_load_package, a TensorRT runtime) and run on reproducible batches drawn around the training
distribution, at batch sizes 1, 7 and the maximum unless the policy says otherwise.

- max_abs_error: the largest |compiled - eager| over every batch.
- max_rel_error: per batch, the largest |compiled - eager| over the largest |eager| (relative to the
  output's scale: element-wise relative error explodes where outputs cross zero); the worst batch.
- An output passes when it is within the absolute OR the relative tolerance (as allclose does: small
  outputs are judged absolutely, large ones relatively). Non-finite outputs always fail.
- accuracy_delta: for class scores, the fraction of rows whose top class changed; otherwise the mean
  absolute change over the mean absolute eager output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.compiler.compilers.base import CompileOutput, Compiler, Tolerance
from services.compiler.signature import ModelSignature, sample_inputs
from services.core.errors import FailedPrecondition, InvalidArgument

MAX_BATCH_SIZES = 8


@dataclass(frozen=True)
class ValidationPolicy:
    batch_sizes: tuple[int, ...] = ()  # empty: 1, 7 and the maximum
    tolerance_abs: float = 0.0  # 0: the compiler's default
    tolerance_rel: float = 0.0
    warn_only: bool = False

    def checked(self, max_batch_size: int) -> "ValidationPolicy":
        """The policy with its batch sizes filled in; InvalidArgument naming the field at fault."""
        sizes = self.batch_sizes or tuple(sorted({1, min(7, max_batch_size), max_batch_size}))
        if len(sizes) > MAX_BATCH_SIZES:
            raise InvalidArgument(f"at most {MAX_BATCH_SIZES} batch sizes", field="validation.batch_sizes")
        for index, size in enumerate(sizes):
            if not 1 <= size <= max_batch_size:
                raise InvalidArgument(f"must be between 1 and max_batch_size ({max_batch_size})",
                                      field=f"validation.batch_sizes[{index}]")
        for name in ("tolerance_abs", "tolerance_rel"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InvalidArgument("must be a finite number >= 0 (0: the compiler's default)",
                                      field=f"validation.{name}")
        return ValidationPolicy(tuple(sizes), self.tolerance_abs, self.tolerance_rel, self.warn_only)

    def tolerance(self, default: Tolerance) -> Tolerance:
        return Tolerance(self.tolerance_abs or default.abs, self.tolerance_rel or default.rel)

    def public(self) -> dict[str, Any]:
        return {"batch_sizes": list(self.batch_sizes), "tolerance_abs": self.tolerance_abs,
                "tolerance_rel": self.tolerance_rel, "warn_only": self.warn_only}


def eager_outputs(module: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [module(torch.from_numpy(x)).detach().float().numpy() for x in inputs]


def validate(compiler: Compiler, output: CompileOutput, module: Any, signature: ModelSignature,
             policy: ValidationPolicy, tolerance: Tolerance, *, seed: int = 0) -> dict[str, Any]:
    """ValidationMetrics as a dict; FailedPrecondition when over tolerance (unless warn_only)."""
    inputs = [sample_inputs(signature, size, seed + size) for size in policy.batch_sizes]
    expected = eager_outputs(module, inputs)
    try:
        actual = compiler.run_outputs(output, inputs)
    except FailedPrecondition:
        raise
    except Exception as exc:  # a runtime refusing the file is the output's fault, said in one line
        raise does_not_run(exc) from None
    max_abs = max_rel = 0.0
    for size, want, got in zip(policy.batch_sizes, expected, actual):
        diff, rel = batch_errors(size, want, got)
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
    return {**verdict(policy, tolerance, max_abs, max_rel),
            "accuracy_delta": accuracy_delta(expected, actual, signature.classification)}


def does_not_run(exc: BaseException) -> FailedPrecondition:
    first = str(exc).strip().splitlines()
    return FailedPrecondition(
        f"the compiled output does not load or run: {type(exc).__name__}: {first[0] if first else ''}"[:600],
        field="validation",
    )


def batch_errors(size: int, want: np.ndarray, got: Any, *, what: str = "the output",
                 against: str = "the eager model") -> tuple[float, float]:
    """(largest |got - want|, that over the largest |want|) for one batch; FailedPrecondition when the
    shapes differ or `got` has non-finite values."""
    got = np.asarray(got, dtype=np.float32)
    if got.shape != want.shape:
        raise FailedPrecondition(f"at batch {size} {what} has shape {got.shape}, {against} "
                                 f"{want.shape}", field="validation")
    if not np.isfinite(got).all():
        raise FailedPrecondition(f"at batch {size} {what} has non-finite values", field="validation")
    diff = float(np.abs(got - want).max()) if want.size else 0.0
    scale = float(np.abs(want).max()) if want.size else 0.0
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def verdict(policy: ValidationPolicy, tolerance: Tolerance, max_abs: float, max_rel: float) -> dict[str, Any]:
    """Within the absolute OR the relative tolerance; FailedPrecondition when not (unless warn_only)."""
    passed = max_abs <= tolerance.abs or max_rel <= tolerance.rel
    if not passed and not policy.warn_only:
        raise FailedPrecondition(
            f"over tolerance at batch sizes {list(policy.batch_sizes)}: max_abs_error {max_abs:.4g} > "
            f"tolerance_abs {tolerance.abs:.4g} and max_rel_error {max_rel:.4g} > tolerance_rel "
            f"{tolerance.rel:.4g} (set validation.warn_only to accept it)", field="validation",
        )
    return {
        "batch_sizes": list(policy.batch_sizes), "max_abs_error": max_abs,
        "max_rel_error": max_rel if np.isfinite(max_rel) else 1e300, "tolerance_abs": tolerance.abs,
        "tolerance_rel": tolerance.rel, "passed": passed, "warned": not passed,
    }


def accuracy_delta(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray], classification: bool) -> float:
    want = np.concatenate([e.reshape(len(e), -1) for e in expected])
    got = np.concatenate([np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in actual])
    if classification and want.shape[1] > 1:
        return float((want.argmax(1) != got.argmax(1)).mean())
    scale = float(np.abs(want).mean())
    return float(np.abs(got - want).mean() / scale) if scale > 0 else float(np.abs(got - want).mean())
