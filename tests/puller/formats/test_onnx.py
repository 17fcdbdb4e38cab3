"""ONNX pushes: skl2onnx and torch.onnx.export models bind and serve what their library computes; every
unsafe or unbindable graph is refused naming the field."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.core.errors import InvalidArgument
from services.puller.formats import ImportOptions, inspect_model
from tests.puller.formats.conftest import FEATURES, assert_parity, check_contract, push, serve


def test_sklearn_pipeline_regressor(tmp_path, data, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    imported = inspect_model(folder, ImportOptions(feature_names=tuple(FEATURES)))
    meta = imported.metadata
    check_contract(meta, folder)
    assert (imported.framework, imported.format) == ("onnx", "onnx")
    assert meta["runtime"] == {"kind": "onnxruntime", "file": "model.onnx"}
    assert meta["signature"] == {
        "inputs": [{"name": "X", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "variable", "dtype": "float32", "shape": [-1, 1]}],
        "kind": "regression", "value_output": "variable",
    }
    assert (meta["interfaces"], meta["interface"], meta["feature_names"]) == (["predictor"], "predictor", FEATURES)
    assert "class_labels" not in meta and "native" not in meta
    assert_parity(serve(folder, meta, data.x), sk_regressor.model.predict(data.x))


@pytest.mark.parametrize("variant", ["zipmap", "plain"])
def test_sklearn_classifier_with_and_without_zipmap(tmp_path, data, sk_classifier, variant):
    folder = push(tmp_path, {"model.onnx": sk_classifier.files[variant]})
    meta = inspect_model(folder, ImportOptions(labels=("bear market", "flat market", "bull market"))).metadata
    check_contract(meta, folder)
    classes = list(sk_classifier.model.classes_)  # sorted: bear, bull, flat
    sig = meta["signature"]
    assert sig["kind"] == "classification" and sig["classes"] == classes
    assert sig["probability_output"] == "probabilities"
    assert sig["label_output"] == ("output_label" if variant == "zipmap" else "label")
    assert {"name": "probabilities", "dtype": "float32", "shape": [-1, 3]} in sig["outputs"]
    assert meta["class_labels"] == ["bear market", "flat market", "bull market"]
    assert meta["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert meta["interfaces"] == ["classifier"]
    if variant == "zipmap":
        assert meta["runtime"]["file"] == "served.onnx"
        served = onnx.load(str(folder / "served.onnx"))
        assert all(node.op_type != "ZipMap" for node in served.graph.node)
    else:
        assert meta["runtime"]["file"] == "model.onnx" and not (folder / "served.onnx").exists()
    assert_parity(serve(folder, meta, data.x), sk_classifier.model.predict_proba(data.x))


def test_torch_mlp_regressor_and_softmax_classifier(tmp_path, data, torch_models):
    import torch

    folder = push(tmp_path / "mlp", torch_models["mlp"].files)
    meta = inspect_model(folder, ImportOptions()).metadata
    check_contract(meta, folder)
    assert meta["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
    assert meta["signature"]["kind"] == "regression" and meta["interfaces"] == ["predictor"]
    with torch.no_grad():
        assert_parity(serve(folder, meta, data.x), torch_models["mlp"].model(torch.from_numpy(data.x)).numpy())

    folder = push(tmp_path / "softmax", torch_models["softmax"].files)
    meta = inspect_model(folder, ImportOptions(labels=("down", "flat", "up"))).metadata
    check_contract(meta, folder)
    assert meta["signature"]["kind"] == "classification" and meta["signature"]["classes"] == ["0", "1", "2"]
    assert meta["class_labels"] == ["down", "flat", "up"] and meta["interfaces"] == ["classifier"]
    with torch.no_grad():
        assert_parity(serve(folder, meta, data.x), torch_models["softmax"].model(torch.from_numpy(data.x)).numpy())


def test_torch_conv_forecaster_window(tmp_path, torch_models):
    import torch

    folder = push(tmp_path / "fixed", torch_models["conv"].files)
    meta = inspect_model(folder, ImportOptions(interface="forecaster")).metadata
    check_contract(meta, folder)
    assert meta["signature"]["kind"] == "series" and meta["window"] == 16
    assert (meta["interfaces"], meta["interface"]) == (["forecaster", "predictor"], "forecaster")
    assert meta["feature_names"] == ["value"]
    windows = np.random.default_rng(1).normal(size=(32, 16)).astype(np.float32)
    with torch.no_grad():
        assert_parity(serve(folder, meta, windows), torch_models["conv"].model(torch.from_numpy(windows)).numpy())
    # without a forecaster asked, the same graph is a tabular predictor of 16 columns
    plain = inspect_model(push(tmp_path / "plain", torch_models["conv"].files), ImportOptions()).metadata
    assert plain["interfaces"] == ["predictor"] and len(plain["feature_names"]) == 16
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "wrong", torch_models["conv"].files), ImportOptions(window=24))
    assert refused.value.field == "window" and "16" in refused.value.message

    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "open", torch_models["conv_open"].files), ImportOptions(interface="forecaster"))
    assert refused.value.field == "window"
    meta = inspect_model(push(tmp_path / "open2", torch_models["conv_open"].files), ImportOptions(window=24)).metadata
    assert meta["window"] == 24 and meta["interface"] == "forecaster"


def test_feature_names_from_metadata_props_and_their_count(tmp_path, sk_regressor):
    model = onnx.load_from_string(sk_regressor.files["model.onnx"])
    onnx.helper.set_model_props(model, {"feature_names": "a, b, c, d"})
    meta = inspect_model(push(tmp_path / "props", {"model.onnx": model.SerializeToString()}), ImportOptions()).metadata
    assert meta["feature_names"] == ["a", "b", "c", "d"]
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "count", sk_regressor.files), ImportOptions(feature_names=("a", "b", "c")))
    assert refused.value.field == "feature_names" and "3 feature names" in refused.value.message


def test_interface_the_outputs_cannot_back_is_refused(tmp_path, sk_regressor, sk_classifier):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", sk_regressor.files), ImportOptions(interface="classifier"))
    assert refused.value.field == "interface" and "'variable' float32 [-1, 1]" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", {"model.onnx": sk_classifier.files["plain"]}),
                      ImportOptions(interface="predictor"))
    assert refused.value.field == "interface" and "'probabilities'" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "c", sk_regressor.files), ImportOptions(interface="segmenter"))
    assert refused.value.field == "interface"


def test_labels_of_the_wrong_count_are_refused(tmp_path, sk_classifier, sk_regressor):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {"model.onnx": sk_classifier.files["zipmap"]}),
                      ImportOptions(labels=("up", "down")))
    assert refused.value.field == "labels" and "2 labels for 3 classes" in refused.value.message
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", sk_regressor.files), ImportOptions(labels=("up", "down")))
    assert refused.value.field == "labels"


# ---- graphs built by hand: external data, domains, dtypes ----

def _matmul(dtype=TensorProto.FLOAT, domain: str = "", batch="N") -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")
    if domain:
        node = helper.make_node("Secret", ["x", "W"], ["y"], domain=domain, name="evil")
    else:
        node = helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])], [weights])
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=imports)


def _with_external_data(tmp_path, location: str):
    """A folder whose model.onnx keeps W's data at `location` (a real data file is written at
    weights/w.bin inside the folder and at ../outside.bin next to it)."""
    source = tmp_path / "source"
    source.mkdir()
    onnx.save_model(_matmul(), str(source / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    data = (source / "w.bin").read_bytes()
    model = onnx.load(str(source / "model.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    folder = push(tmp_path, {"model.onnx": model.SerializeToString(), "weights/w.bin": data})
    (tmp_path / "outside.bin").write_bytes(data)
    return folder


def test_external_data_inside_the_folder_loads(tmp_path):
    folder = _with_external_data(tmp_path, "weights/w.bin")
    meta = inspect_model(folder, ImportOptions()).metadata
    assert meta["runtime"]["file"] == "model.onnx" and meta["signature"]["outputs"][0]["shape"] == [-1, 2]
    assert_parity(serve(folder, meta, np.ones((3, 4), np.float32)), np.full((3, 2), 4.0))


@pytest.mark.parametrize("location", ["../outside.bin", "ABSOLUTE", "link.bin", "missing.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    if location == "ABSOLUTE":
        location = str(tmp_path / "outside.bin")
    folder = _with_external_data(tmp_path, location)
    if location == "link.bin":
        (folder / "link.bin").symlink_to(tmp_path / "outside.bin")
        with pytest.raises(InvalidArgument) as refused:  # the folder listing refuses it first
            inspect_model(folder, ImportOptions())
        assert refused.value.field == "files[link.bin]"
        (folder / "link.bin").unlink()
        from services.puller.formats.onnx_checks import check_external_data

        (folder / "link.bin").symlink_to(folder / "weights" / "w.bin")
        with pytest.raises(InvalidArgument) as refused:
            check_external_data(onnx.load(str(folder / "model.onnx"), load_external_data=False), folder,
                                folder / "model.onnx", "model.onnx")
        assert "symbolic link" in refused.value.message
    else:
        with pytest.raises(InvalidArgument) as refused:
            inspect_model(folder, ImportOptions())
        assert refused.value.field == "files[model.onnx].external_data[W]"
        assert "'W'" in refused.value.message


def test_unknown_op_domain_is_refused(tmp_path):
    folder = push(tmp_path, {"model.onnx": _matmul(domain="com.example.evil").SerializeToString()})
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(folder, ImportOptions())
    assert refused.value.field == "files[model.onnx]"
    assert "'com.example.evil'" in refused.value.message and "evil" in refused.value.message


@pytest.mark.parametrize("dtype,name", [(TensorProto.FLOAT16, "float16"), (TensorProto.BOOL, "bool"),
                                        (TensorProto.UINT8, "uint8")])
def test_unsupported_input_dtype_is_refused(tmp_path, dtype, name):
    model = _matmul()
    model.graph.input[0].type.tensor_type.elem_type = dtype
    folder = push(tmp_path, {"model.onnx": model.SerializeToString()})
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(folder, ImportOptions())
    assert refused.value.field == "files[model.onnx]" and f"input 'x' is {name}" in refused.value.message


def test_fixed_batch_is_refused(tmp_path):
    folder = push(tmp_path, {"model.onnx": _matmul(batch=2).SerializeToString()})
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(folder, ImportOptions())
    assert refused.value.field == "interface" and "fixed batch of 2" in refused.value.message


@pytest.mark.parametrize("content", ["truncated", "garbage"])
def test_truncated_or_garbage_onnx_is_refused(tmp_path, sk_regressor, content):
    raw = sk_regressor.files["model.onnx"]
    body = raw[: len(raw) // 2] if content == "truncated" else b"\x08\x07garbage that is not a model" * 10
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path, {"model.onnx": body}), ImportOptions())
    assert refused.value.field == "files[model.onnx]" and "ONNX" in refused.value.message


def test_files_beside_the_graph_that_carry_code_are_refused(tmp_path, sk_regressor, sk_pickle):
    meta = inspect_model(push(tmp_path / "a", {**sk_regressor.files, "README.md": b"# my model\n"}),
                         ImportOptions()).metadata
    assert meta["runtime"]["file"] == "model.onnx"
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", {**sk_regressor.files, "extra/scaler.bin": sk_pickle}), ImportOptions())
    assert refused.value.field == "files[extra/scaler.bin]" and "pickle" in refused.value.message


def test_text_classifier_binds_classifier_and_analyzer(tmp_path):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = np.array(["stocks rally on earnings", "shares fall sharply", "markets rally again", "prices fall"] * 5)
    labels = np.array(["up", "down", "up", "down"] * 5)
    # lowercase=False: no StringNormalizer node, which needs the en_US.UTF-8 locale in ONNX Runtime
    model = make_pipeline(CountVectorizer(lowercase=False), LogisticRegression()).fit(texts, labels)
    graph = to_onnx(model, initial_types=[("text", StringTensorType([None, 1]))], options={"zipmap": False})
    folder = push(tmp_path, {"model.onnx": graph.SerializeToString()})
    meta = inspect_model(folder, ImportOptions(interface="analyzer")).metadata
    check_contract(meta, folder)
    assert meta["signature"]["kind"] == "text" and meta["signature"]["classes"] == ["down", "up"]
    assert meta["signature"]["inputs"] == [{"name": "text", "dtype": "string", "shape": [-1, 1]}]
    assert (meta["interfaces"], meta["interface"]) == (["classifier", "analyzer"], "analyzer")
    assert meta["feature_names"] == ["text"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / meta["runtime"]["file"]), providers=["CPUExecutionProvider"])
    served = session.run([meta["signature"]["probability_output"]], {"text": texts[:4].reshape(-1, 1)})[0]
    assert_parity(served, model.predict_proba(texts[:4]))
