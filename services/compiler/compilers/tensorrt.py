"""TensorRT: an engine (`model.plan`) built from the ONNX export with an optimization profile for the
batch dimension. Probed first (platform, the `tensorrt` package's import spec, the CUDA device count)
without importing TensorRT; built and run only in a subprocess (tensorrt_build.py), because TensorRT
can abort the process that calls it and the service must outlive a failed build."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import services
from services.compiler.compilers.base import (
    Availability, CompileJob, CompileOutput, Compiler, Param, Runner, Tolerance,
)
from services.compiler.compilers.onnx import MODEL_FILE, OPSET, export_onnx, versions
from services.compiler.compilers.registry import register_compiler
from services.core.errors import DeadlineExceeded, FailedPrecondition

PLAN_FILE = "model.plan"
PLATFORM = "tensorrt_plan"
BUILD_MODULE = "services.compiler.compilers.tensorrt_build"

PRECISION = Param("precision", "string", "Engine precision: 'fp16' (FP16 kernels allowed) or 'fp32'.", "fp16",
                  choices=("fp16", "fp32"))
WORKSPACE = Param("workspace_mb", "int", "Builder workspace memory limit in MiB.", 2048, minimum=64,
                  maximum=1 << 20)
OPT_BATCH = Param("opt_batch_size", "int", "Batch size the profile is tuned for; 0: half the max batch size.",
                  0, minimum=0, maximum=1 << 16)


def probe() -> Availability:
    """Why TensorRT cannot run here, every reason at once; touches no TensorRT code."""
    reasons = []
    if not sys.platform.startswith("linux"):
        reasons.append(f"TensorRT engines are built on Linux (this is {sys.platform})")
    if importlib.util.find_spec("tensorrt") is None:
        reasons.append("the tensorrt Python package is not installed")
    import torch

    if torch.cuda.device_count() == 0:
        build = "" if torch.version.cuda else f"; torch {torch.__version__} is a CPU-only build"
        reasons.append(f"no NVIDIA GPU is visible (torch.cuda.device_count() == 0{build})")
    return Availability(not reasons, "; ".join(reasons))


@register_compiler("tensorrt")
class TensorRTCompiler(Compiler):
    targets = ("plan",)
    output_format = "TensorRT engine model.plan (tied to the GPU model and TensorRT version that built it)"
    parameters = (PRECISION, WORKSPACE, OPT_BATCH, OPSET)
    tolerances = {"fp32": Tolerance(abs=1e-3, rel=1e-3), "fp16": Tolerance(abs=2e-2, rel=2e-2)}

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._probe: Availability | None = None

    def availability(self) -> Availability:
        if self._probe is None:  # hardware does not change under a running service
            self._probe = probe()
        return self._probe

    def tool_versions(self) -> dict[str, str]:
        return versions("tensorrt", "torch", "onnx")

    def tolerance(self, target, kwargs) -> Tolerance:
        return self.tolerances[kwargs.get("precision", "fp16")]  # fp32 engines still use TF32 on Ampere+

    def compile(self, job: CompileJob) -> CompileOutput:
        kw = job.kwargs
        stage = job.scratch / "tensorrt-onnx"
        export_onnx(job.module, job.example, job.max_batch_size, stage, opset=kw["opset"], external_data=False,
                    what="TensorRT: ONNX export")
        job.out_dir.mkdir(parents=True, exist_ok=True)
        opt = kw["opt_batch_size"] or max(1, (job.max_batch_size + 1) // 2)
        self._subprocess(
            "build", "--onnx", str(stage / MODEL_FILE), "--plan", str(job.out_dir / PLAN_FILE), "--min", "1",
            "--opt", str(min(opt, job.max_batch_size)), "--max", str(job.max_batch_size),
            "--precision", kw["precision"], "--workspace-mb", str(kw["workspace_mb"]), what="TensorRT build",
        )
        return CompileOutput(job.out_dir, PLAN_FILE, (PLAN_FILE,), PLATFORM,
                             {**self.tool_versions(), "opset": str(kw["opset"])},
                             notes=(f"TensorRT {kw['precision']} engine, batch profile 1..{job.max_batch_size}",),
                             instance_kind="KIND_GPU")

    def runner(self, output: CompileOutput) -> Runner:
        def run(x: np.ndarray) -> np.ndarray:
            return self.run_outputs(output, [x])[0]

        return run

    def run_outputs(self, output: CompileOutput, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="mlmesh-trt-") as tmp:
            np.savez(Path(tmp) / "in.npz", **{f"b{i:04d}": x for i, x in enumerate(inputs)})
            self._subprocess("run", "--plan", str(output.folder / output.primary), "--inputs",
                             str(Path(tmp) / "in.npz"), "--outputs", str(Path(tmp) / "out.npz"), what="TensorRT run")
            with np.load(Path(tmp) / "out.npz") as data:
                return [data[f"b{i:04d}"] for i in range(len(inputs))]

    def _subprocess(self, *args: str, what: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(services.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        try:
            done = subprocess.run([self.settings.python(), "-m", BUILD_MODULE, *args], capture_output=True,
                                  text=True, env=env, timeout=self.settings.tensorrt_build_timeout_s)
        except subprocess.TimeoutExpired:
            raise DeadlineExceeded(f"{what} took longer than {self.settings.tensorrt_build_timeout_s:g} s") from None
        if done.returncode == 0:
            return
        if done.returncode < 0:
            name = signal.Signals(-done.returncode).name
            raise FailedPrecondition(f"{what}: the TensorRT process died with {name}", field="target")
        lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
        reason = lines[-1].removeprefix("error: ") if lines else f"exit status {done.returncode}"
        raise FailedPrecondition(f"{what} failed: {reason[:600]}", field="target")
