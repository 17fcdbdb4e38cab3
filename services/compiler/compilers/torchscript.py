"""TorchScript `.pt` (torch.jit.trace / script; deprecated upstream, still what Triton's libtorch
platform loads) and the current path, `.pt2`: torch.export + AOTInductor (`torch_aoti` in Triton)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from services.compiler.compilers.base import (
    CompileJob, CompileOutput, Compiler, Param, Runner, Tolerance, export_failure, export_mode,
)
from services.compiler.compilers.onnx import versions
from services.compiler.compilers.registry import register_compiler
from services.compiler.signature import ModelSignature
from services.core.errors import FailedPrecondition

PT_FILE, PT2_FILE = "model.pt", "model.pt2"
PT_PLATFORM, PT2_PLATFORM = "pytorch_libtorch", "torch_aoti"
DEPRECATION = ("torch.jit.trace/script (TorchScript) is deprecated upstream; target pt2 "
               "(torch.export + AOTInductor) is the current path")

METHOD = Param("method", "string", "How the .pt is made: 'trace' (follows one example; control flow is "
               "frozen) or 'script' (compiles the Python source).", "trace", choices=("trace", "script"),
               targets=("pt",))


def torchscript(module: Any, example: Any, method: str, path: Path, what: str = "torch.jit") -> None:
    """Writes a TorchScript archive. Tracing skips its own re-trace check: the validation that follows
    compares the saved file with the eager model at several batch sizes, which is the stronger check."""
    import torch

    try:
        with export_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation warning is recorded in the output's notes
            if method == "script":
                scripted = torch.jit.script(module)
            else:
                scripted = torch.jit.trace(module, (example,), check_trace=False)
            torch.jit.save(scripted, str(path))
    except Exception as exc:
        raise export_failure(f"{what}.{method}", exc) from None


def torchscript_runner(path: Path) -> Runner:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.jit.load is deprecated": recorded in the output's notes
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _first(module(torch.from_numpy(x))).numpy()

    return run


def _first(result: Any) -> Any:
    return result[0] if isinstance(result, (list, tuple)) else result


def aoti_package(module: Any, example: Any, max_batch_size: int, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=max(max_batch_size, 2))
    try:
        with export_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        raise export_failure("torch.export", exc) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as exc:
        raise export_failure("AOTInductor compile", exc) from None


@register_compiler("torchscript")
class TorchScriptCompiler(Compiler):
    targets = ("pt", "pt2")
    output_format = ("pt: TorchScript model.pt (torch.jit, deprecated upstream); pt2: AOTInductor package "
                     "model.pt2 (torch.export + aoti_compile_and_package, the current path)")
    parameters = (METHOD,)
    tolerances = {"pt": Tolerance(abs=1e-5, rel=1e-5), "pt2": Tolerance(abs=1e-4, rel=1e-4)}

    def tool_versions(self) -> dict[str, str]:
        return {**versions("torch"), "torch.jit": "deprecated upstream (pt); pt2 is the current path"}

    def check_signature(self, target: str, kwargs: dict, signature: ModelSignature) -> None:
        super().check_signature(target, kwargs, signature)
        if target == "pt2" and not (shutil.which("g++") or shutil.which("c++")):
            raise FailedPrecondition("AOTInductor (pt2) needs a C++ compiler (g++) on PATH", field="target")

    def compile(self, job: CompileJob) -> CompileOutput:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        if job.target == "pt2":
            aoti_package(job.module, job.example, job.max_batch_size, job.out_dir / PT2_FILE)
            return CompileOutput(job.out_dir, PT2_FILE, (PT2_FILE,), PT2_PLATFORM, versions("torch"),
                                 notes=("torch.export + torch._inductor.aoti_compile_and_package",))
        torchscript(job.module, job.example, job.kwargs["method"], job.out_dir / PT_FILE)
        return CompileOutput(job.out_dir, PT_FILE, (PT_FILE,), PT_PLATFORM,
                             {**versions("torch"), "torch.jit": "deprecated upstream"}, notes=(DEPRECATION,))

    def runner(self, output: CompileOutput) -> Runner:
        if output.primary == PT2_FILE:
            import torch

            package = torch._inductor.aoti_load_package(str(output.folder / output.primary))

            def run(x: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return _first(package(torch.from_numpy(x))).numpy()

            return run
        return torchscript_runner(output.folder / output.primary)
