"""TensorRT: refused fast, with every reason, where it cannot run; never able to take the service down
with it; and, on a machine with an NVIDIA GPU and TensorRT, built and validated for real."""

from __future__ import annotations

import os
import stat
import time

import pytest

from services.compiler.compilers.tensorrt import TensorRTCompiler, probe
from services.compiler.settings import CompilerSettings
from services.core.errors import FailedPrecondition

HERE = probe()


@pytest.mark.skipif(HERE.available, reason="this machine can build TensorRT engines")
def test_unavailable_with_every_reason_and_refused_fast(catalog):
    info = next(c for c in catalog.compilers if c.alias == "tensorrt")
    state = info.availability()
    assert not state.available
    assert "tensorrt Python package is not installed" in state.reason or "no NVIDIA GPU" in state.reason
    for name in ("tensorrt", "plan", "engine"):
        started = time.perf_counter()
        with pytest.raises(FailedPrecondition) as err:
            catalog.available(name)
        assert time.perf_counter() - started < 0.5
        assert err.value.field == "target"
        assert state.reason in err.value.message


def test_probe_never_imports_tensorrt():
    import sys

    probe()
    assert "tensorrt" not in sys.modules


def test_a_crashing_tensorrt_process_is_a_status_not_a_crash(tmp_path):
    """TensorRT can abort its process; the build runs in a child, so the service reports it."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nkill -ABRT $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    compiler = TensorRTCompiler(CompilerSettings(tensorrt_python=str(fake)))
    with pytest.raises(FailedPrecondition) as err:
        compiler._subprocess("build", "--onnx", "x", "--plan", "y", "--opt", "1", "--max", "2", what="TensorRT build")
    assert "died with SIGABRT" in err.value.message


def test_a_failing_build_reports_its_reason(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'some log line' >&2\necho 'error: the TensorRT ONNX parser refused the graph: "
                    "unsupported op' >&2\nexit 2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    compiler = TensorRTCompiler(CompilerSettings(tensorrt_python=str(fake)))
    with pytest.raises(FailedPrecondition) as err:
        compiler._subprocess("build", what="TensorRT build")
    assert err.value.message == "TensorRT build failed: the TensorRT ONNX parser refused the graph: unsupported op"


@pytest.mark.skipif(not HERE.available, reason=f"TensorRT cannot run here: {HERE.reason}")
def test_engine_builds_and_matches_eager(models, compile_model):  # pragma: no cover - GPU machines only
    compiled = compile_model(models["mlp"], "tensorrt", {"precision": "fp32"})
    assert compiled.metrics["passed"]
    assert compiled.primary.path == "1/model.plan"
    assert "platform: \"tensorrt_plan\"" in (compiled.entry / "config.pbtxt").read_text()
    assert os.path.getsize(compiled.entry / "1" / "model.plan") > 0
