"""Quantized and reduced-precision outputs.

- int8, ONNX (default): fp32 export -> ONNX Runtime `quant_pre_process` (shape inference + graph
  optimisation; without it LSTM weights stay fp32) -> `quantize_dynamic` with QInt8 weights.
- int8, TorchScript: torch dynamic quantization of Linear/LSTM (fbgemm; CPU-only) -> traced .pt.
- fp16 (ONNX default, or .pt) / bf16 (.pt only): weights cast, inputs and outputs kept fp32 by a cast
  wrapper, so the serving contract (FP32 tensors) does not change with precision.
- An imported ONNX graph (docs/byom.md; int8 and fp16, ONNX only): the graph itself quantized or
  converted, keeping its tensor names and IO types (compilers/onnx_graph.py).
"""

from __future__ import annotations

import copy
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

from services.compiler.compilers.base import (
    CompileJob, CompileOutput, Compiler, Param, Runner, Tolerance, export_failure,
)
from services.compiler.compilers.onnx import (
    EXTERNAL_DATA, EXTERNAL_DATA_AUTO_BYTES, MODEL_FILE, OPSET, PLATFORM, export_onnx, onnx_runner, versions,
    wants_external_data,
)
from services.compiler.compilers.onnx_graph import (
    GraphJob, GraphRun, convert_fp16, graph_runner, quantize_int8, written_files,
)
from services.compiler.compilers.registry import register_compiler
from services.compiler.compilers.torchscript import PT_FILE, PT_PLATFORM, torchscript, torchscript_runner
from services.core.errors import InvalidArgument

FORMAT = Param("format", "string", "Output format: 'auto' (int8 and fp16: onnx; bf16: pt), 'onnx' or 'pt'.",
               "auto", choices=("auto", "onnx", "pt"))
PER_CHANNEL = Param("per_channel", "bool", "int8 ONNX: one weight scale per output channel.", False,
                    targets=("int8",))
REDUCE_RANGE = Param("reduce_range", "bool", "int8 ONNX: 7-bit weights (for CPUs without VNNI).", False,
                     targets=("int8",))


def output_format(target: str, kwargs: Mapping[str, Any]) -> str:
    chosen = kwargs.get("format", "auto")
    if chosen == "auto":
        return "pt" if target == "bf16" else "onnx"
    return chosen


def _cast_wrapper(module: Any, dtype: Any) -> Any:
    from torch import nn

    class CastWrapper(nn.Module):
        """Runs `inner` in `dtype` behind fp32 inputs and outputs."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.to(dtype)).float()

    return CastWrapper(copy.deepcopy(module).to(dtype)).eval()


@register_compiler("quantization")
class QuantizationCompiler(Compiler):
    targets = ("int8", "fp16", "bf16")
    graph_targets = ("int8", "fp16")
    output_format = "int8: model.onnx (ONNX Runtime QInt8) or model.pt (torch dynamic); fp16/bf16: model.onnx or model.pt"
    parameters = (FORMAT, OPSET, EXTERNAL_DATA, PER_CHANNEL, REDUCE_RANGE)
    tolerances = {
        "int8": Tolerance(abs=5e-2, rel=5e-2), "fp16": Tolerance(abs=1e-2, rel=1e-2),
        "bf16": Tolerance(abs=5e-2, rel=5e-2),
    }

    def tool_versions(self) -> dict[str, str]:
        return versions("torch", "onnx", "onnxscript", "onnxruntime")

    def check(self, target, kwargs, signature):
        effective = super().check(target, kwargs, signature)
        fmt = output_format(target, effective)
        if target == "bf16" and fmt == "onnx":
            raise InvalidArgument(
                "bf16 ONNX graphs have no ONNX Runtime CPU kernels (Sub, MatMul, LSTM), so the output could "
                "not be validated; use format 'pt'", field="kwargs.format",
            )
        if fmt == "pt":
            for name in ("opset", "external_data", "per_channel", "reduce_range"):
                if name in kwargs:
                    raise InvalidArgument("applies to format 'onnx' only", field=f"kwargs.{name}")
                effective.pop(name, None)
        return effective

    def compile(self, job: CompileJob) -> CompileOutput:
        fmt = output_format(job.target, job.kwargs)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        if job.target == "int8":
            return self._int8_onnx(job) if fmt == "onnx" else self._int8_torch(job)
        import torch

        dtype = torch.float16 if job.target == "fp16" else torch.bfloat16
        wrapped = _cast_wrapper(job.module, dtype)
        if fmt == "onnx":
            files = export_onnx(wrapped, job.example, job.max_batch_size, job.out_dir, opset=job.kwargs["opset"],
                                external_data=wants_external_data(wrapped, job.kwargs["external_data"]),
                                what=f"{job.target} ONNX export")
            return CompileOutput(job.out_dir, MODEL_FILE, files, PLATFORM,
                                 {**self.tool_versions(), "opset": str(job.kwargs["opset"])},
                                 notes=(f"weights {job.target}, inputs/outputs fp32",))
        torchscript(wrapped, job.example, "trace", job.out_dir / PT_FILE, what=f"{job.target} torch.jit")
        return CompileOutput(job.out_dir, PT_FILE, (PT_FILE,), PT_PLATFORM, versions("torch"),
                             notes=(f"weights {job.target}, inputs/outputs fp32",))

    def check_graph(self, target, requested, effective):
        if output_format(target, effective) != "onnx":
            raise InvalidArgument("an imported ONNX graph compiles to ONNX only", field="kwargs.format")
        if "opset" in requested:
            raise InvalidArgument("applies to torch exports only: an imported graph keeps its own opsets",
                                  field="kwargs.opset")
        return {k: v for k, v in effective.items() if k not in ("format", "opset")}

    def compile_graph(self, job: GraphJob) -> CompileOutput:
        kw = job.kwargs
        choice = kw["external_data"]
        external = choice == "always" or (choice == "auto" and job.graph.size > EXTERNAL_DATA_AUTO_BYTES)
        if job.target == "int8":
            notes = quantize_int8(job.graph, job.out_dir, job.scratch, per_channel=kw["per_channel"],
                                  reduce_range=kw["reduce_range"], external=external)
        else:
            notes = convert_fp16(job.graph, job.out_dir, job.scratch, external=external)
        return CompileOutput(job.out_dir, MODEL_FILE, written_files(job.out_dir), PLATFORM,
                             versions("onnx", "onnxruntime"), notes=(f"imported graph {job.graph.label}", *notes))

    def graph_runner(self, output: CompileOutput) -> GraphRun:
        return graph_runner(output.folder / output.primary)

    def _int8_onnx(self, job: CompileJob) -> CompileOutput:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        kw = job.kwargs
        external = wants_external_data(job.module, kw["external_data"])
        stage = job.scratch / "int8"
        try:
            export_onnx(job.module, job.example, job.max_batch_size, stage / "fp32", opset=kw["opset"],
                        external_data=external, what="int8: fp32 ONNX export")
            (stage / "pre").mkdir(parents=True, exist_ok=True)
            pre = stage / "pre" / MODEL_FILE
            try:
                quant_pre_process(str(stage / "fp32" / MODEL_FILE), str(pre), save_as_external_data=external,
                                  all_tensors_to_one_file=True)
                quantize_dynamic(str(pre), str(job.out_dir / MODEL_FILE), weight_type=QuantType.QInt8,
                                 per_channel=kw["per_channel"], reduce_range=kw["reduce_range"],
                                 use_external_data_format=external)
            except Exception as exc:
                raise export_failure("ONNX Runtime int8 quantization", exc) from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        files = tuple(sorted(p.name for p in job.out_dir.iterdir() if p.is_file()))
        return CompileOutput(job.out_dir, MODEL_FILE, files, PLATFORM,
                             {**self.tool_versions(), "opset": str(kw["opset"])},
                             notes=("onnxruntime quant_pre_process + quantize_dynamic(QInt8)",))

    def _int8_torch(self, job: CompileJob) -> CompileOutput:
        import torch
        from torch import nn

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its deprecation is recorded in the output's notes
                quantized = torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(job.module), {nn.Linear, nn.LSTM}, dtype=torch.qint8
                )
        except Exception as exc:
            raise export_failure("torch dynamic quantization", exc) from None
        torchscript(quantized, job.example, "trace", job.out_dir / PT_FILE, what="int8 torch.jit")
        return CompileOutput(
            job.out_dir, PT_FILE, (PT_FILE,), PT_PLATFORM, {**versions("torch"), "torch.ao.quantization": "deprecated upstream"},
            notes=("torch.ao.quantization.quantize_dynamic (qint8 Linear/LSTM; deprecated upstream in favour of "
                   "torchao); runs on CPU instances only",),
            instance_kind="KIND_CPU",
        )

    def runner(self, output: CompileOutput) -> Runner:
        if output.primary == MODEL_FILE:
            return onnx_runner(output.folder / output.primary)
        return torchscript_runner(output.folder / output.primary)
