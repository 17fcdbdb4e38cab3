"""Model repository entries, without the binary: names, config.pbtxt, atomic writes, the vendored module."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from google.protobuf import text_format
from safetensors.torch import save_file
from tritonclient.grpc import model_config_pb2

from services.core.errors import InvalidArgument, NotFound
from services.core.models.architectures import build_module
from services.serving.triton.repository import ModelConfig, ModelRepository, TensorSpec, vendored_architectures

CONFIG = ModelConfig((TensorSpec("x", (8,)),), (TensorSpec("y", (-1, 2), "int64"),), max_batch_size=16)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(build_module({"type": "mlp", "layers": [8, 4]}).state_dict(), path)
    return path


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x" * 129, "a b", "..", None])
def test_unsafe_model_names_are_refused(tmp_path, name):
    with pytest.raises(InvalidArgument) as caught:
        ModelRepository(tmp_path).path(name)
    assert caught.value.field == "model_name"


@pytest.mark.parametrize(
    "spec", [TensorSpec('x"', (1,)), TensorSpec("x", ()), TensorSpec("x", (0,)), TensorSpec("x", (1,), "complex64")]
)
def test_bad_tensor_specs_are_refused(spec):
    with pytest.raises(InvalidArgument):
        ModelConfig((spec,), (TensorSpec("y", (1,)),)).text("m", "torch")


def test_config_is_valid_triton_pbtxt():
    config = ModelConfig(CONFIG.inputs, CONFIG.outputs, max_batch_size=16, dynamic_batching_delay_us=500, threads=1)
    parsed = text_format.Parse(config.text("m", "torch"), model_config_pb2.ModelConfig())
    assert parsed.backend == "python" and parsed.max_batch_size == 16
    assert [(t.name, list(t.dims), t.data_type) for t in parsed.input] == [("x", [8], model_config_pb2.TYPE_FP32)]
    assert [(t.name, list(t.dims), t.data_type) for t in parsed.output] == [("y", [-1, 2], model_config_pb2.TYPE_INT64)]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 500
    assert parsed.parameters["mlmesh_runtime"].string_value == "torch"
    assert not text_format.Parse(CONFIG.text("m", "torch"), model_config_pb2.ModelConfig()).HasField("dynamic_batching")


def test_entry_is_written_whole_and_replaced_whole(tmp_path, weights):
    repo = ModelRepository(tmp_path / "models")
    entry = repo.write_torch_model("mlp", CONFIG, architecture={"type": "mlp", "layers": [8, 4]}, weights=weights)
    assert sorted(p.name for p in (entry / "1").iterdir()) == [
        "architecture.json", "mlmesh_architectures.py", "model.py", "model.safetensors",
    ]  # fmt: skip
    (entry / "1" / "stale").write_text("from the previous version")
    repo.write_torch_model("mlp", CONFIG, architecture={"type": "mlp", "layers": [8, 4]}, weights=weights)
    assert not (entry / "1" / "stale").exists()
    assert sorted(p.name for p in repo.root.iterdir()) == ["mlp"]  # no staging left behind
    repo.remove("mlp")
    with pytest.raises(NotFound):
        repo.remove("mlp")


def test_a_failed_write_leaves_nothing(tmp_path):
    repo = ModelRepository(tmp_path / "models")
    with pytest.raises(NotFound):
        repo.write_onnx_model("m", CONFIG, onnx_file=tmp_path / "absent.onnx")
    assert not (repo.root / "m").exists()


def test_vendored_architectures_work_without_the_mlmesh_package(tmp_path):
    """Triton's environment has no mlmesh: the copy must import with torch alone and match the original."""
    (tmp_path / "mlmesh_architectures.py").write_text(vendored_architectures())
    torch.manual_seed(0)
    module = build_module({"type": "mlp", "layers": [3, 5, 2]})
    save_file(module.state_dict(), tmp_path / "w.safetensors")
    expected = module(torch.ones(2, 3)).tolist()
    script = (
        "import sys; sys.modules['services'] = sys.modules['mlmesh'] = None\n"  # any mesh import fails
        "import torch, mlmesh_architectures as a; from safetensors.torch import load_file\n"
        "m = a.load_module({'type': 'mlp', 'layers': [3, 5, 2]}, load_file('w.safetensors'))\n"
        "print(m(torch.ones(2, 3)).tolist())\n"
        "try: a.build_module({'type': 'nope'})\n"
        "except ValueError as e: print(type(e).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert torch.allclose(torch.tensor(eval(lines[0])), torch.tensor(expected)) and lines[1] == "InvalidArgument"
