"""Every CPU compiler on three real models: compile, load the output back with the runtime that serves
it, check parity with the eager model, and check the Triton entry it comes in."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest
import torch

from services.compiler.signature import sample_inputs
from services.compiler.triton_config import check_entry, parse_config

# (model, target, kwargs, platform, model file, parity bound for the independent check)
MATRIX = [
    *[(m, "onnx", {}, "onnxruntime_onnx", "model.onnx", 1e-4) for m in ("mlp", "lstm", "transformer")],
    *[(m, "torchscript", {}, "pytorch_libtorch", "model.pt", 1e-5) for m in ("mlp", "lstm", "transformer")],
    *[(m, "int8", {}, "onnxruntime_onnx", "model.onnx", 5e-2) for m in ("mlp", "lstm", "transformer")],
    *[(m, "int8", {"format": "pt"}, "pytorch_libtorch", "model.pt", 5e-2) for m in ("mlp", "lstm", "transformer")],
    ("mlp", "fp16", {}, "onnxruntime_onnx", "model.onnx", 1e-2),
    ("lstm", "fp16", {"format": "pt"}, "pytorch_libtorch", "model.pt", 1e-2),
    ("transformer", "fp16", {"format": "pt"}, "pytorch_libtorch", "model.pt", 1e-2),
    ("lstm", "bf16", {}, "pytorch_libtorch", "model.pt", 5e-2),
]


def load_back(path):
    """The file as a server loads it, with nothing of the compiler's."""
    if path.suffix == ".onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(["OUTPUT__0"], {"INPUT__0": x})[0]
    module = torch.jit.load(str(path), map_location="cpu")
    return lambda x: module(torch.from_numpy(x)).detach().numpy()


def relative_error(got, want) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


@pytest.mark.parametrize(("model", "target", "kwargs", "platform", "filename", "bound"), MATRIX,
                         ids=[f"{m}-{t}{'-' + '-'.join(map(str, k.values())) if k else ''}" for m, t, k, *_ in MATRIX])
def test_compile_load_back_and_parity(models, compile_model, model, target, kwargs, platform, filename, bound):
    m = models[model]
    compiled = compile_model(m, target, kwargs)

    metrics = compiled.metrics
    assert metrics["passed"] and not metrics["warned"]
    assert metrics["batch_sizes"] == [1, 7, 64]
    assert metrics["max_abs_error"] <= metrics["tolerance_abs"] or metrics["max_rel_error"] <= metrics["tolerance_rel"]
    assert 0 <= metrics["accuracy_delta"] < 0.1

    # Load the stored file back on its own, at a batch size validation did not use.
    path = compiled.entry / "1" / filename
    x = sample_inputs(m.signature, 5, seed=99)
    with torch.no_grad():
        want = m.module(torch.from_numpy(x)).numpy()
    got = load_back(path)(x)
    assert got.shape == want.shape
    assert relative_error(got, want) <= bound

    # Every file hashed; the primary is the model file; the entry passes Triton's rules.
    for f in compiled.files:
        data = (compiled.entry / f.path).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (f.sha256, f.size)
    assert compiled.primary.path == f"1/{filename}"
    assert check_entry(compiled.entry) == []
    config = parse_config((compiled.entry / "config.pbtxt").read_text())
    assert config.platform == platform and config.max_batch_size == 64
    assert [tuple(t.dims) for t in config.input] == [m.signature.input.dims]
    assert [t.name for t in config.input] == ["INPUT__0"] and [t.name for t in config.output] == ["OUTPUT__0"]


def test_int8_onnx_is_smaller_and_quantized(models, compile_model):
    """INT8 really is INT8: the weights shrink and the graph carries dynamic-quantization ops
    (quant_pre_process first, so the LSTM is quantized too)."""
    import onnx

    m = models["lstm"]
    fp32 = compile_model(m, "onnx")
    int8 = compile_model(m, "int8")
    ops = {n.op_type for n in onnx.load(str(int8.entry / "1" / "model.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops
    assert int8.model_size < fp32.model_size


def test_dynamic_quantization_torch_is_cpu_only_in_triton(models, compile_model):
    compiled = compile_model(models["mlp"], "int8", {"format": "pt"})
    config = parse_config((compiled.entry / "config.pbtxt").read_text())
    assert [g.kind for g in config.instance_group] == [2]  # KIND_CPU: fbgemm kernels have no GPU version
    assert any("deprecated" in n for n in compiled.output.notes)


def test_torchscript_script_method_and_deprecation_note(models, compile_model):
    compiled = compile_model(models["lstm"], "pt", {"method": "script"})
    assert compiled.metrics["max_abs_error"] == 0.0
    assert any("deprecated upstream" in n for n in compiled.output.notes)
    assert compiled.output.tool_versions["torch.jit"] == "deprecated upstream"


def test_dynamic_batching_in_the_entry(models, compile_model):
    compiled = compile_model(models["mlp"], "pt", {"dynamic_batching": True, "max_queue_delay_us": 250},
                             max_batch_size=16)
    config = parse_config((compiled.entry / "config.pbtxt").read_text())
    assert config.max_batch_size == 16
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert compiled.metrics["batch_sizes"] == [1, 7, 16]
