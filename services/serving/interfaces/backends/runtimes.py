"""Runtimes: one array in, one array out. The torch runtime wraps an eager module; the ONNX Runtime one
a compiled .onnx. Backends combine a runtime with an interface's pre- and postprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from services.core.errors import InvalidArgument
from services.serving.engine.executor import default_torch_threads


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
            raise InvalidArgument(f"not a loadable ONNX model: {type(exc).__name__}: {exc}", field="model") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise InvalidArgument(f"expected one input and an output, got {len(inputs)} inputs", field="model")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
