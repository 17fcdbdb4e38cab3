"""Files that are refused whatever their name: pickles, torch.export programs, empty files, formats that
contradict the option, folders the inspector cannot make sense of."""

from __future__ import annotations

import pytest

from services.core.errors import InvalidArgument
from services.puller.formats import ImportOptions, inspect_model
from tests.puller.formats.conftest import push


@pytest.mark.parametrize("name", ["model.json", "model.pt2", "model.onnx", "model.ubj", "model.txt"])
def test_sklearn_pickle_renamed_is_refused_with_how_to_convert(tmp_path, sk_pickle, name):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, {name: sk_pickle}), ImportOptions())
    assert refused.value.field == f"files[{name}]"
    assert "scikit-learn" in refused.value.message
    assert "skl2onnx.to_onnx(model, X[:1].astype('float32'), options={'zipmap': False})" in refused.value.message


def test_torch_checkpoint_is_refused_unless_an_operator_allows_pickle(tmp_path, torch_pickle):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, {"model.pt": torch_pickle}), ImportOptions())
    assert refused.value.field == "files[model.pt]" and "torch.onnx.export" in refused.value.message


def _checkpoint(obj) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_an_allowed_torch_checkpoint_is_read_weights_only_and_stored_as_safetensors(tmp_path):
    from services.core.models.architectures import build_module

    architecture = {"type": "mlp", "layers": [4, 8, 3]}
    state = build_module(architecture).state_dict()
    folder = push(tmp_path, {"model.pt": _checkpoint({"architecture": architecture, "state_dict": state,
                                                      "class_labels": ["a", "b", "c"]})})
    model = inspect_model(folder, ImportOptions(allow_pickle=True))
    assert (model.framework, model.format) == ("torch", "safetensors")
    assert model.metadata["architecture"] == architecture and model.metadata["interface"] == "classifier"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]   # the pickle itself is not kept

    bare = push(tmp_path / "bare", {"model.pt": _checkpoint(state)})
    with pytest.raises(InvalidArgument) as refused:   # weights alone cannot say what module they fill
        inspect_model(bare, ImportOptions(allow_pickle=True))
    assert refused.value.field == "format" and "architecture" in refused.value.message


def test_an_allowed_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path):
    from tests.puller.conftest import Canary

    canary = tmp_path / "ran"
    folder = push(tmp_path, {"model.pt": _checkpoint({"state_dict": {}, "hook": Canary(str(canary))})})
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(folder, ImportOptions(allow_pickle=True))
    assert refused.value.field == "files[model.pt]" and "weights-only" in refused.value.message
    assert not canary.exists()


@pytest.mark.parametrize("name", ["model.pt2", "model.onnx"])
def test_torch_export_program_is_refused(tmp_path, name):
    import torch

    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    path = tmp_path / "program.pt2"
    torch.export.save(torch.export.export(Double(), (torch.randn(2, 3),)), str(path))
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, {name: path.read_bytes()}), ImportOptions())
    assert refused.value.field == f"files[{name}]"
    assert "torch.export programs can run code when loaded; export to ONNX with torch.onnx.export" \
        in refused.value.message


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, {"model.onnx": b""}), ImportOptions())
    assert refused.value.field == "files[model.onnx]" and "empty" in refused.value.message


def test_format_that_contradicts_the_content_is_refused(tmp_path, xgb_models, sk_regressor):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {"model.json": xgb_models["binary"].files["model.json"]}),
                      ImportOptions(format="lightgbm"))
    assert refused.value.field == "format" and "XGBoost JSON model, not lightgbm" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", sk_regressor.files), ImportOptions(format="xgboost"))
    assert refused.value.field == "format"
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "c", sk_regressor.files), ImportOptions(format="hf"))
    assert refused.value.field == "format" and "config.json" in refused.value.message


def test_content_decides_not_the_suffix(tmp_path, data, xgb_models, sk_regressor):
    meta = inspect_model(push(tmp_path / "a", {"model.bin": xgb_models["regressor"].files["model.ubj"]}),
                         ImportOptions(format="xgboost")).metadata
    assert meta["native"]["file"] == "model.bin" and meta["conversion"]["served"] == "onnx"
    imported = inspect_model(push(tmp_path / "b", {"model.dat": sk_regressor.files["model.onnx"]}), ImportOptions())
    assert imported.framework == "onnx" and imported.metadata["runtime"]["file"] == "model.dat"


def test_unknown_content_and_ambiguous_folders_are_refused(tmp_path, sk_regressor):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {"model.bin": b"just some bytes\n" * 8}), ImportOptions())
    assert refused.value.field == "files[model.bin]" and "imports" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", {"a.onnx": sk_regressor.files["model.onnx"],
                                            "b.onnx": sk_regressor.files["model.onnx"]}), ImportOptions())
    assert refused.value.field == "files" and "2 ONNX graphs" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "c", {"x.txt": b"a", "y.txt": b"b"}), ImportOptions())
    assert refused.value.field == "files"


def test_options_are_checked(tmp_path, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    for options, field in ((ImportOptions(format="pickle"), "format"), (ImportOptions(interface="oracle"), "interface"),
                           (ImportOptions(window=-1), "window"), (ImportOptions(labels=("a", "a")), "labels"),
                           (ImportOptions(reference="relative.csv"), "reference")):
        with pytest.raises(InvalidArgument) as refused:
            inspect_model(folder, options)
        assert refused.value.field == field
