"""ONNX: `torch.onnx.export` with the dynamo exporter (torch.export underneath), a dynamic batch
dimension, checked back under ONNX Runtime. The quantization and TensorRT compilers start from here."""

from __future__ import annotations

import importlib.util
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from services.compiler.compilers.base import (
    Availability, CompileJob, CompileOutput, Compiler, Param, Runner, Tolerance, export_failure, export_mode,
)
from services.compiler.compilers.registry import register_compiler
from services.compiler.signature import INPUT_NAME, OUTPUT_NAME

MODEL_FILE = "model.onnx"
PLATFORM = "onnxruntime_onnx"
# protobuf cannot hold a message over 2 GiB; weights past this go to an external data file.
EXTERNAL_DATA_AUTO_BYTES = 1 << 30

OPSET = Param("opset", "int", "ONNX opset of the exported graph (the dynamo exporter needs 18 or later).", 20,
              minimum=18, maximum=23)
EXTERNAL_DATA = Param(
    "external_data", "string",
    "Weights in a separate model.onnx.data file: 'auto' (only past 1 GiB, where protobuf's 2 GiB limit "
    "nears), 'always' or 'never'. Every file written is hashed and stored.", "auto",
    choices=("auto", "always", "never"),
)
OPTIMIZE = Param("optimize", "bool", "Run the exporter's graph optimizer (constant folding, fusion).", True)


def versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def wants_external_data(module: Any, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) > EXTERNAL_DATA_AUTO_BYTES


def export_onnx(module: Any, example: Any, max_batch_size: int, out_dir: Path, *, opset: int,
                external_data: bool, optimize: bool = True, what: str = "ONNX export") -> tuple[str, ...]:
    """Writes model.onnx (and model.onnx.data) into `out_dir`; returns the files written, sorted."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    # An example batch of 2+ keeps torch.export from specialising the batch to a constant 1.
    batch = torch.export.Dim("batch", min=1, max=max(max_batch_size, 2))
    try:
        with export_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter deprecation chatter; failures still raise
            torch.onnx.export(
                module, (example,), str(out_dir / MODEL_FILE), dynamo=True, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], opset_version=opset, dynamic_shapes=({0: batch},),
                external_data=external_data, optimize=optimize, verbose=False,
            )
    except Exception as exc:  # the exporter raises many kinds; the caller gets its reason
        raise export_failure(what, exc) from None
    return tuple(sorted(p.name for p in out_dir.iterdir() if p.is_file()))


def onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


@register_compiler("onnx")
class OnnxCompiler(Compiler):
    targets = ("onnx",)
    output_format = "onnx (model.onnx, plus model.onnx.data when weights are external)"
    parameters = (OPSET, EXTERNAL_DATA, OPTIMIZE)
    tolerances = {"onnx": Tolerance(abs=1e-4, rel=1e-4)}

    def availability(self) -> Availability:
        for package in ("onnx", "onnxscript", "onnxruntime"):
            if importlib.util.find_spec(package) is None:
                return Availability(False, f"the {package} package is not installed")
        return Availability(True)

    def tool_versions(self) -> dict[str, str]:
        return versions("torch", "onnx", "onnxscript", "onnxruntime")

    def compile(self, job: CompileJob) -> CompileOutput:
        kw = job.kwargs
        files = export_onnx(
            job.module, job.example, job.max_batch_size, job.out_dir, opset=kw["opset"],
            external_data=wants_external_data(job.module, kw["external_data"]), optimize=kw["optimize"],
        )
        return CompileOutput(
            job.out_dir, MODEL_FILE, files, PLATFORM, {**self.tool_versions(), "opset": str(kw["opset"])},
            notes=("exported with torch.onnx.export(dynamo=True)",),
        )

    def runner(self, output: CompileOutput) -> Runner:
        return onnx_runner(output.folder / output.primary)
