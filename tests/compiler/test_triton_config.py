"""config.pbtxt writing and Triton's rules: what mlmesh writes passes; each broken rule is named."""

from __future__ import annotations

import shutil

import pytest

from services.compiler.signature import TensorSig
from services.compiler.triton_config import check_entry, config_text, validate_entry, write_entry
from services.core.errors import InvalidArgument

IN, OUT = (TensorSig("INPUT__0", (4,)),), (TensorSig("OUTPUT__0", (2,)),)


def entry(tmp_path, platform="pytorch_libtorch", text=None, model_file="model.pt", version="1", name="m"):
    folder = tmp_path / name
    (folder / version).mkdir(parents=True)
    (folder / version / model_file).write_bytes(b"not checked for this platform")
    (folder / "config.pbtxt").write_text(text if text is not None else config_text(platform, IN, OUT, 8))
    return folder


@pytest.mark.parametrize(("platform", "model_file"), [
    ("pytorch_libtorch", "model.pt"), ("torch_aoti", "model.pt2"), ("tensorrt_plan", "model.plan"),
    ("python", "model.py"),
])
def test_written_configs_pass(tmp_path, platform, model_file):
    text = config_text(platform, IN, OUT, 8, dynamic_batching=True, max_queue_delay_us=50,
                       instance_kind="KIND_GPU" if platform == "tensorrt_plan" else "")
    config = validate_entry(entry(tmp_path, platform, text, model_file))
    assert config.max_batch_size == 8 and config.dynamic_batching.max_queue_delay_microseconds == 50
    assert not config.name  # Triton takes the name from the folder


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda t: t.replace('backend: "pytorch"', 'backend: "onnxruntime"'), "runs on backend 'pytorch'"),
    (lambda t: t.replace('platform: "pytorch_libtorch"', 'platform: "caffe2_netdef"'), "is not one of"),
    (lambda t: t.replace("max_batch_size: 8", "max_batch_size: 0") + "dynamic_batching { }\n",
     "dynamic_batching needs max_batch_size > 0"),
    (lambda t: t + "dynamic_batching { preferred_batch_size: [ 16 ] }\n", "outside 1..max_batch_size"),
    (lambda t: t.replace('"OUTPUT__0"', '"logits"'), "named <name>__<index>"),
    (lambda t: t.replace("dims: [ 4 ]", "dims: [ 0 ]"), "must be -1 or positive"),
    (lambda t: t.replace("data_type: TYPE_FP32\n    dims: [ 4 ]", "dims: [ 4 ]"), "has no data_type"),
    (lambda t: t.replace("  }\n]", "  },\n  { name: \"INPUT__0\" data_type: TYPE_FP32 dims: [ 1 ] }\n]", 1),
     "input names are not unique"),
    (lambda t: 'name: "other"\n' + t, "differs from the folder name"),
    (lambda t: t + "no_such_field: 1\n", "not a Triton ModelConfig"),
])
def test_broken_rules_are_named(tmp_path, mutate, problem):
    text = mutate(config_text("pytorch_libtorch", IN, OUT, 8))
    problems = check_entry(entry(tmp_path, text=text))
    assert any(problem in p for p in problems), problems


def test_layout_rules(tmp_path):
    assert any("no numeric version folder" in p for p in check_entry(entry(tmp_path, version="latest")))
    assert any("no model.pt" in p for p in check_entry(entry(tmp_path, model_file="model.onnx", name="b")))
    assert any("versions start at 1" in p for p in check_entry(entry(tmp_path, version="0", name="c")))
    plan = config_text("tensorrt_plan", IN, OUT, 8, instance_kind="KIND_CPU")
    assert any("GPU instances only" in p for p in check_entry(entry(tmp_path, text=plan, model_file="model.plan",
                                                                     name="d")))
    with pytest.raises(InvalidArgument) as err:
        validate_entry(tmp_path / "missing")
    assert err.value.field == "triton_entry"


def test_onnx_graph_must_agree_with_the_config(tmp_path, models, compile_model):
    compiled = compile_model(models["mlp"], "onnx")
    good = tmp_path / "good"
    shutil.copytree(compiled.entry, good)
    assert check_entry(good) == []
    config = (good / "config.pbtxt").read_text()
    (good / "config.pbtxt").write_text(config.replace("dims: [ 6 ]", "dims: [ 5 ]"))
    assert any("do not fit config dims" in p for p in check_entry(good))
    (good / "config.pbtxt").write_text(config.replace("TYPE_FP32", "TYPE_FP16", 1))
    assert any("graph type TYPE_FP32 but config TYPE_FP16" in p for p in check_entry(good))
    (good / "config.pbtxt").write_text(config.replace("max_batch_size: 64", "max_batch_size: 0"))
    assert any("do not fit" in p for p in check_entry(good))


def test_external_data_must_sit_beside_the_graph(tmp_path, models, compile_model):
    compiled = compile_model(models["mlp"], "onnx", {"external_data": "always"})
    assert [f.path for f in compiled.files] == ["1/model.onnx", "1/model.onnx.data", "config.pbtxt"]
    broken = tmp_path / "broken"
    shutil.copytree(compiled.entry, broken)
    (broken / "1" / "model.onnx.data").unlink()
    assert any("external data file 'model.onnx.data' is missing" in p for p in check_entry(broken))


def test_write_entry_is_atomic_and_write_once(tmp_path, models, compile_model):
    compiled = compile_model(models["mlp"], "pt")
    files = {"model.pt": compiled.entry / "1" / "model.pt"}
    config = (compiled.entry / "config.pbtxt").read_text()
    first = write_entry(tmp_path / "repo", "mlp_pt", config, files)
    assert validate_entry(first) and (first / "1" / "model.pt").is_file()
    assert write_entry(tmp_path / "repo", "mlp_pt", "ignored", files) == first  # kept as it was
    assert (first / "config.pbtxt").read_text() == config
    assert not list((tmp_path / "repo" / ".staging").iterdir())
    with pytest.raises(InvalidArgument):
        write_entry(tmp_path / "repo", "../escape", config, files)
