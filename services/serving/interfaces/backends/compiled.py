"""Runtimes for the compiler's torch outputs: TorchScript `model.pt` (torch.jit.load) and the AOTInductor
package `model.pt2` (torch._inductor.aoti_load_package). One float32 array in, one array out, like
TorchRuntime: the tabular, forecaster (and text) backends put them behind the same pre- and
postprocessing as the eager model of the source artifact.

Both load files the resolver fetched and hashed against the compiled record (whose id covers its files).
A `.pt2` holds a native shared library that is dlopen'ed: only records that hash to their id get here.
They run in-process only: the Triton this service starts has the python backend alone, and the entry's
tensor names are the compiler's (INPUT__0 / OUTPUT__0), not the backend's.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from services.core.errors import FailedPrecondition, outward

log = logging.getLogger("mlmesh.serving.models")

PT_SUFFIX, PT2_SUFFIX = ".pt", ".pt2"
IN_PROCESS_ONLY = ("compiled {} outputs run in-process here (this Triton has no pytorch backend); "
                   "deploy the onnx compile or the source artifact to run on Triton")


def _first(result):
    """A compiled graph may return its one output wrapped in a tuple or list."""
    return result[0] if isinstance(result, (list, tuple)) else result


class TorchScriptRuntime:
    uses_torch = True
    in_process_only = IN_PROCESS_ONLY.format("TorchScript (.pt)")

    def __init__(self, path: Path | str) -> None:
        import torch

        self._torch = torch
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "torch.jit.load is deprecated": the compiler notes it
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # torch raises RuntimeError or its own types for a bad archive
            log.warning("not a loadable TorchScript archive: %s", exc)  # in full; the caller gets outward()
            raise FailedPrecondition(f"not a loadable TorchScript archive: {type(exc).__name__}: {outward(exc)}",
                                     field="model") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            return _first(self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))).numpy()


class AotiRuntime:
    """An AOTInductor package. torch.export fixed its batch dimension's range at compile time
    (1..max_batch_size, what the compiler validated), while a session may form larger batches: those
    run in chunks within the range rather than trusting code generated for it outside it."""

    uses_torch = True
    in_process_only = IN_PROCESS_ONLY.format("AOTInductor (.pt2)")

    def __init__(self, path: Path | str, *, max_batch_size: int = 0) -> None:
        import torch
        import torch._inductor

        self._torch = torch
        self.max_batch_size = max(int(max_batch_size), 0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.package = torch._inductor.aoti_load_package(str(path))
        except Exception as exc:
            log.warning("not a loadable AOTInductor package: %s", exc)  # in full; the caller gets outward()
            raise FailedPrecondition(f"not a loadable AOTInductor package: {type(exc).__name__}: {outward(exc)}",
                                     field="model") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.max_batch_size or max(len(x), 1)
        with torch.no_grad():
            parts = [_first(self.package(torch.from_numpy(x[i:i + step]))).numpy() for i in range(0, len(x), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def compiled_runtime(path: Path | str, *, max_batch_size: int = 0) -> TorchScriptRuntime | AotiRuntime:
    """The runtime for a compiled torch output, by its file suffix."""
    suffix = Path(path).suffix
    if suffix == PT_SUFFIX:
        return TorchScriptRuntime(path)
    if suffix == PT2_SUFFIX:
        return AotiRuntime(path, max_batch_size=max_batch_size)
    raise FailedPrecondition(f"{Path(path).name}: not a compiled torch output (.pt or .pt2)", field="model")
