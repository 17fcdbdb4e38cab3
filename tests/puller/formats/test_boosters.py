"""XGBoost and LightGBM pushes: converted to ONNX only for allow-listed objectives and only when parity is
proven; what is served (ONNX or the library) computes what the library's own predict does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.errors import InvalidArgument
from services.puller.formats import ImportOptions, inspect_model
from tests.puller.formats.conftest import FEATURES, assert_parity, check_contract, push, serve, write_csv

# LightGBM's sklearn API, fitted with feature names, warns when predicting on a plain array.
pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def _native(trained, x: np.ndarray) -> np.ndarray:
    model = trained.model
    return model.predict_proba(x) if hasattr(model, "predict_proba") else model.predict(x)


@pytest.mark.parametrize("name", ["binary", "multi", "softmax", "regressor"])
@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost_converted_and_proven(tmp_path, data, xgb_models, name, suffix):
    trained = xgb_models[name]
    rel = f"model.{suffix}"
    folder = push(tmp_path, {rel: trained.files[rel]})
    imported = inspect_model(folder, ImportOptions())
    meta = imported.metadata
    check_contract(meta, folder)
    assert (imported.framework, imported.format) == ("xgboost", f"xgboost-{suffix}")
    assert meta["runtime"] == {"kind": "onnxruntime", "file": "model.onnx", "iteration_range": [0, 12]}
    assert meta["native"] == {"kind": "xgboost", "file": rel, "iteration_range": [0, 12]}
    assert meta["feature_names"] == FEATURES
    conversion = meta["conversion"]
    assert conversion["served"] == "onnx" and conversion["to"] == "onnx" and conversion["reason"] == ""
    assert conversion["rows"] > 10 and conversion["max_abs_diff"] <= 1e-4 and conversion["tolerance"] == 1e-4
    sig = meta["signature"]
    assert sig["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 4]}]
    if name == "regressor":
        assert sig["kind"] == "regression" and sig["value_output"] == "variable"
        assert meta["interfaces"] == ["predictor"] and conversion["labels_identical"] is None
    else:
        classes = ["0", "1"] if name == "binary" else ["0", "1", "2"]
        assert sig["kind"] == "classification" and sig["classes"] == classes == meta["class_labels"]
        assert sig["probability_output"] == "probabilities" and sig["label_output"] == "label"
        assert meta["interfaces"] == ["classifier"] and conversion["labels_identical"] is True
    native = _native(trained, data.x)
    if name == "softmax":  # the sklearn API gives class ids; its probabilities are the softmax of the margins
        margin = trained.model.predict(data.x, output_margin=True)
        native = np.exp(margin) / np.exp(margin).sum(axis=1, keepdims=True)
        assert (np.argmax(serve(folder, meta, data.x), axis=1) == trained.model.predict(data.x)).all()
    assert_parity(serve(folder, meta, data.x), native)


def test_xgboost_reg_logistic_is_served_natively(tmp_path, data, xgb_models):
    trained = xgb_models["logistic"]
    folder = push(tmp_path, {"model.ubj": trained.files["model.ubj"]})
    meta = inspect_model(folder, ImportOptions()).metadata
    check_contract(meta, folder)
    assert meta["runtime"] == {"kind": "xgboost", "file": "model.ubj", "iteration_range": [0, 12]}
    assert meta["conversion"]["served"] == "native" and "reg:logistic" in meta["conversion"]["reason"]
    assert meta["conversion"]["rows"] == 0 and not (folder / "model.onnx").exists()
    assert meta["signature"] == {
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "variable", "dtype": "float32", "shape": [-1, 1]}],
        "kind": "regression", "value_output": "variable",
    }
    assert_parity(serve(folder, meta, data.x), trained.model.predict(data.x))


def test_xgboost_logitraw_classifies_natively_through_the_sigmoid(tmp_path, data):
    import xgboost as xgb

    booster = xgb.train({"objective": "binary:logitraw", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(data.x, label=data.y_bin), num_boost_round=5)
    folder = push(tmp_path, {"model.json": bytes(booster.save_raw("json"))})
    meta = inspect_model(folder, ImportOptions()).metadata
    check_contract(meta, folder)
    assert meta["signature"]["kind"] == "classification" and meta["signature"]["classes"] == ["0", "1"]
    assert meta["runtime"]["kind"] == "xgboost" and "binary:logitraw" in meta["conversion"]["reason"]


def test_xgboost_best_iteration_bounds_the_trees(tmp_path, data):
    import xgboost as xgb

    train = xgb.DMatrix(data.x[:150], label=data.y_reg[:150], feature_names=FEATURES)
    valid = xgb.DMatrix(data.x[150:], label=data.y_reg[150:], feature_names=FEATURES)
    booster = xgb.train({"max_depth": 4, "eta": 0.9, "nthread": 1}, train, num_boost_round=40,
                        evals=[(valid, "valid")], early_stopping_rounds=2, verbose_eval=False)
    assert booster.best_iteration + 1 < booster.num_boosted_rounds()
    folder = push(tmp_path, {"model.json": bytes(booster.save_raw("json"))})
    meta = inspect_model(folder, ImportOptions()).metadata
    end = booster.best_iteration + 1
    assert meta["runtime"]["iteration_range"] == [0, end] and meta["conversion"]["served"] == "onnx"
    expected = booster.predict(xgb.DMatrix(data.x, feature_names=FEATURES), iteration_range=(0, end))
    assert_parity(serve(folder, meta, data.x), expected)


def test_ranking_booster_needs_the_predictor_interface(tmp_path, data, xgb_models):
    trained = xgb_models["ranker"]
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {"model.json": trained.files["model.json"]}), ImportOptions())
    assert refused.value.field == "interface" and "rank:pairwise" in refused.value.message
    folder = push(tmp_path / "b", {"model.json": trained.files["model.json"]})
    meta = inspect_model(folder, ImportOptions(interface="predictor")).metadata
    check_contract(meta, folder)
    assert meta["interfaces"] == ["predictor"] and meta["conversion"]["served"] == "native"
    assert_parity(serve(folder, meta, data.x), trained.model.predict(data.x))


@pytest.mark.parametrize("name", ["regressor", "binary", "multi"])
def test_lightgbm_converted_and_proven(tmp_path, data, lgb_models, name):
    trained = lgb_models[name]
    folder = push(tmp_path, trained.files)
    imported = inspect_model(folder, ImportOptions())
    meta = imported.metadata
    check_contract(meta, folder)
    assert (imported.framework, imported.format) == ("lightgbm", "lightgbm-text")
    assert meta["native"] == {"kind": "lightgbm", "file": "model.txt"}
    assert meta["runtime"] == {"kind": "onnxruntime", "file": "model.onnx"}
    assert meta["feature_names"] == FEATURES
    assert meta["conversion"]["served"] == "onnx", meta["conversion"]["reason"]
    if name == "regressor":
        assert meta["signature"]["kind"] == "regression"
    else:
        assert meta["signature"]["classes"] == (["0", "1"] if name == "binary" else ["0", "1", "2"])
        assert meta["conversion"]["labels_identical"] is True
        assert {"name": "label", "dtype": "int64", "shape": [-1]} in meta["signature"]["outputs"]
    assert_parity(serve(folder, meta, data.x), _native(trained, data.x))


def test_lightgbm_float32_thresholds_split_like_lightgbm(tmp_path, lgb_models):
    """Every float32 input at, just below and just above each of the model's thresholds goes the same way
    in the converted graph as in LightGBM (the thresholds rounded above their double are moved down)."""
    from services.puller.formats.lightgbm_model import _split_thresholds
    from services.puller.formats.parity import threshold_sample

    trained = lgb_models["regressor"]
    folder = push(tmp_path, trained.files)
    meta = inspect_model(folder, ImportOptions()).metadata
    thresholds = _split_thresholds(trained.model.booster_.dump_model())
    assert any(float(np.float32(t)) > t for ts in thresholds.values() for t in ts)  # the case exists here
    sample = threshold_sample(thresholds, 4)
    assert meta["conversion"]["rows"] == len(sample)
    assert_parity(serve(folder, meta, sample), trained.model.predict(sample))


def test_reference_that_float32_cannot_represent_serves_natively(tmp_path):
    """Large-valued features collapse in float32: parity on the user's sample fails, so the library serves."""
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    x = 1e8 + rng.integers(0, 64, size=(300, 2)).astype(np.float64) * 0.25
    y = (x[:, 0] - 1e8) + rng.normal(scale=0.01, size=300)
    model = lgb.LGBMRegressor(n_estimators=20, num_leaves=8, min_child_samples=3, verbose=-1).fit(x, y)
    folder = push(tmp_path, {"model.txt": model.booster_.model_to_string().encode()})
    reference = write_csv(tmp_path / "sample.csv", ["Column_0", "Column_1"], x)
    meta = inspect_model(folder, ImportOptions(reference=reference)).metadata
    check_contract(meta, folder)
    conversion = meta["conversion"]
    assert conversion["served"] == "native" and "parity failed" in conversion["reason"]
    assert "reference sample" in conversion["reason"] and conversion["rows"] == 300
    assert meta["runtime"] == {"kind": "lightgbm", "file": "model.txt"} and not (folder / "model.onnx").exists()
    assert_parity(serve(folder, meta, x), model.predict(x))


def test_reference_proves_parity_when_it_holds(tmp_path, data, xgb_models):
    trained = xgb_models["binary"]
    folder = push(tmp_path, {"model.ubj": trained.files["model.ubj"]})
    reference = write_csv(tmp_path / "sample.csv", ["target"] + FEATURES[::-1],
                          np.hstack([data.y_bin[:, None], data.x[:, ::-1]]))
    meta = inspect_model(folder, ImportOptions(reference=reference)).metadata
    check_contract(meta, folder)
    assert meta["conversion"]["rows"] == 200 and meta["conversion"]["served"] == "onnx"
    assert meta["reference"]["rows"] == 200
    np.testing.assert_allclose(meta["training_stats"]["mean"], data.x.astype(np.float64).mean(axis=0), rtol=1e-6)


def test_booster_labels_and_feature_names_are_checked(tmp_path, xgb_models, lgb_models):
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "a", {"model.json": xgb_models["multi"].files["model.json"]}),
                      ImportOptions(labels=("a", "b")))
    assert refused.value.field == "labels"
    with pytest.raises(InvalidArgument) as refused:
        inspect_model(push(tmp_path / "b", lgb_models["regressor"].files), ImportOptions(feature_names=("a",)))
    assert refused.value.field == "feature_names"
    meta = inspect_model(push(tmp_path / "c", {"model.json": xgb_models["multi"].files["model.json"]}),
                         ImportOptions(labels=("bear", "flat", "bull"), feature_names=("a", "b", "c", "d"))).metadata
    assert meta["class_labels"] == ["bear", "flat", "bull"] and meta["feature_names"] == ["a", "b", "c", "d"]
    assert meta["signature"]["classes"] == ["0", "1", "2"]
    json.dumps(meta, allow_nan=False)
