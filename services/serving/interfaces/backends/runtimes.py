"""Runtimes: one array in, one array out. The torch runtime wraps an eager module; the ONNX Runtime one
a compiled .onnx. Backends combine a runtime with an interface's pre- and postprocessing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from services.core.errors import InvalidArgument, outward
from services.serving.engine.executor import default_torch_threads

log = logging.getLogger("mlmesh.serving.models")


class Runtime(Protocol):
    uses_torch: bool

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchRuntime:
    uses_torch = True

    def __init__(self, module) -> None:
        import torch

        self._torch = torch
        self.module = module.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


class NumpyMLPRuntime:
    """An MLP (services.core.models.architectures.MLP) as numpy matrix products.

    Same weights, same float32 arithmetic as the eager module; for the small MLPs served here torch's
    per-call dispatch (~40 µs) is most of the cost and numpy's is a few µs.
    """

    uses_torch = False

    def __init__(self, mean: np.ndarray, std: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.mean, self.std = mean, std
        self.layers = [(np.ascontiguousarray(w.T), b) for w, b in layers]   # x @ W.T + b, transposed once

    @classmethod
    def from_module(cls, module) -> "NumpyMLPRuntime":
        """From an MLP module: its normalisation buffers and its Linear layers, in order."""
        import torch

        linears = [m for m in module.net if isinstance(m, torch.nn.Linear)]
        as_array = lambda t: t.detach().cpu().numpy().astype(np.float32, copy=True)  # noqa: E731
        return cls(as_array(module.input_mean), as_array(module.input_std),
                   [(as_array(m.weight), as_array(m.bias)) for m in linears])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = (np.asarray(x, dtype=np.float32) - self.mean) / self.std
        last = len(self.layers) - 1
        for i, (weight_t, bias) in enumerate(self.layers):
            h = h @ weight_t
            h += bias
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h


def runtime_for_module(module) -> Runtime:
    """The fastest runtime that computes what `module` computes: numpy for an MLP, else eager torch."""
    from services.core.models.architectures import MLP

    if type(module) is MLP:
        return NumpyMLPRuntime.from_module(module)
    return TorchRuntime(module)


class OnnxRuntime:
    """An ONNX Runtime session on CPU with one input and one output (a dynamic batch dimension)."""

    uses_torch = False

    def __init__(self, path: Path | str, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_torch_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable or invalid models
            log.warning("not a loadable ONNX model: %s", exc)  # in full; the caller gets outward()
            raise InvalidArgument(f"not a loadable ONNX model: {type(exc).__name__}: {outward(exc)}",
                                  field="model") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise InvalidArgument(f"expected one input and an output, got {len(inputs)} inputs", field="model")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
