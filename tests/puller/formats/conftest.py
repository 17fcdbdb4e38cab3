"""Real, tiny models trained once per session (scikit-learn via skl2onnx, XGBoost, LightGBM, torch via the
dynamo ONNX exporter), a helper that lays files out as a push, and the checks every imported model's
metadata must pass (docs/byom.md)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.core.canonical import canonical_json

FEATURES = ["open", "high", "low", "volume"]
INTERFACES = {"predictor", "classifier", "forecaster", "segmenter", "analyzer"}


@dataclass(frozen=True)
class Data:
    x: np.ndarray        # float32 [200, 4]
    y_reg: np.ndarray
    y_bin: np.ndarray
    y_multi: np.ndarray  # 0, 1, 2


@pytest.fixture(scope="session")
def data() -> Data:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y_reg = (2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3]).astype(np.float32)
    y_bin = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    y_multi = y_bin + (x[:, 2] > 0.5)
    return Data(x, y_reg, y_bin, y_multi)


def push(root: Path, files: dict[str, bytes]) -> Path:
    """A staging folder holding `files` (relative path -> bytes), as the Push RPC leaves it."""
    folder = root / "push"
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    return folder


def write_csv(path: Path, header: list[str], rows: np.ndarray) -> str:
    lines = [",".join(header)] + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def onnx_bytes(model) -> bytes:
    return model.SerializeToString()


# ---- scikit-learn through skl2onnx ----

@dataclass(frozen=True)
class Trained:
    model: Any
    files: dict[str, bytes]


@pytest.fixture(scope="session")
def sk_regressor(data) -> Trained:
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    model = make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=15, max_depth=3, random_state=0))
    model.fit(data.x, data.y_reg)
    return Trained(model, {"model.onnx": onnx_bytes(to_onnx(model, data.x[:1]))})


@pytest.fixture(scope="session")
def sk_classifier(data) -> Trained:
    """LogisticRegression on string classes; files: with ZipMap (skl2onnx's default) and without."""
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx

    labels = np.array(["bear", "flat", "bull"])[data.y_multi]
    model = LogisticRegression(max_iter=500).fit(data.x, labels)
    return Trained(model, {
        "zipmap": onnx_bytes(to_onnx(model, data.x[:1])),
        "plain": onnx_bytes(to_onnx(model, data.x[:1], options={"zipmap": False})),
    })


@pytest.fixture(scope="session")
def sk_pickle(data) -> bytes:
    import pickle

    from sklearn.linear_model import LinearRegression

    return pickle.dumps(LinearRegression().fit(data.x, data.y_reg))


# ---- XGBoost and LightGBM ----

@pytest.fixture(scope="session")
def xgb_models(data) -> dict[str, Trained]:
    """name -> (sklearn-API estimator, {"model.json": ..., "model.ubj": ...})."""
    import xgboost as xgb

    def saved(estimator) -> dict[str, bytes]:
        booster = estimator.get_booster()
        booster.feature_names = FEATURES
        return {"model.json": bytes(booster.save_raw("json")), "model.ubj": bytes(booster.save_raw("ubj"))}

    common = {"n_estimators": 12, "max_depth": 3, "n_jobs": 1, "random_state": 0}
    out = {}
    for name, estimator, y in (
        ("binary", xgb.XGBClassifier(**common), data.y_bin),
        ("multi", xgb.XGBClassifier(**common), data.y_multi),
        ("softmax", xgb.XGBClassifier(objective="multi:softmax", **common), data.y_multi),
        ("regressor", xgb.XGBRegressor(**common), data.y_reg),
        ("logistic", xgb.XGBRegressor(objective="reg:logistic", **common), (data.y_reg > 0).astype(np.float32)),
        ("ranker", xgb.XGBRanker(objective="rank:pairwise", **common), data.y_multi),
    ):
        if name == "ranker":
            estimator.fit(data.x, y, qid=np.repeat(np.arange(20), 10))
        else:
            estimator.fit(data.x, y)
        out[name] = Trained(estimator, saved(estimator))
    return out


@pytest.fixture(scope="session")
def lgb_models(data) -> dict[str, Trained]:
    import lightgbm as lgb

    common = {"n_estimators": 15, "num_leaves": 8, "min_child_samples": 5, "verbose": -1, "n_jobs": 1}
    out = {}
    for name, estimator, y in (
        ("regressor", lgb.LGBMRegressor(**common), data.y_reg),
        ("binary", lgb.LGBMClassifier(**common), data.y_bin),
        ("multi", lgb.LGBMClassifier(**common), data.y_multi),
    ):
        estimator.fit(data.x.astype(np.float64), y, feature_name=FEATURES)
        out[name] = Trained(estimator, {"model.txt": estimator.booster_.model_to_string().encode()})
    return out


# ---- torch through torch.onnx.export (dynamo) ----

@pytest.fixture(scope="session")
def torch_models(tmp_path_factory) -> dict[str, Trained]:
    """An MLP regressor [-1, 4] -> [-1, 1], a softmax MLP classifier [-1, 4] -> [-1, 3], and a 1-D conv
    forecaster with a fixed window [-1, 16] -> [-1, 1] and one with an open window [-1, W] -> [-1, 1]."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv1d(1, 4, 3), nn.Linear(4, 1)

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(window.unsqueeze(1))).mean(dim=-1))

    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    softmax = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=-1)).eval()
    conv = Conv().eval()
    batch, window = torch.export.Dim("batch"), torch.export.Dim("window", min=4, max=4096)
    out = {}
    for name, module, example, dims in (
        ("mlp", mlp, torch.randn(2, 4), {0: batch}),
        ("softmax", softmax, torch.randn(2, 4), {0: batch}),
        ("conv", conv, torch.randn(2, 16), {0: batch}),
        ("conv_open", conv, torch.randn(2, 16), {0: batch, 1: window}),
    ):
        path = tmp_path_factory.mktemp("torch") / f"{name}.onnx"
        torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                          input_names=["x"], output_names=["y"], dynamic_shapes=(dims,))
        out[name] = Trained(module, {"model.onnx": path.read_bytes()})
    return out


@pytest.fixture(scope="session")
def torch_pickle() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    return buffer.getvalue()


# ---- what serving would run, and the metadata contract ----

def serve(folder: Path, meta: dict, x: np.ndarray) -> np.ndarray:
    """What serving computes from `meta.runtime` on rows `x`: the value output (regression / series) or
    the [-1, C] probability output (classification)."""
    runtime, sig = meta["runtime"], meta["signature"]
    wanted = sig.get("value_output") or sig["probability_output"]
    if runtime["kind"] == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / runtime["file"]), providers=["CPUExecutionProvider"])
        (name,) = [i.name for i in session.get_inputs()]
        return session.run([wanted], {name: x.astype(np.float32)})[0]
    if runtime["kind"] == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(folder / runtime["file"]))
        values = booster.inplace_predict(x, iteration_range=tuple(runtime["iteration_range"]),
                                         validate_features=False)
    else:
        import lightgbm as lgb

        values = lgb.Booster(model_file=str(folder / runtime["file"])).predict(x)
    values = np.asarray(values).reshape(len(x), -1)
    if sig["kind"] == "classification" and values.shape[1] == 1:
        values = np.hstack([1 - values, values])
    return values


def assert_parity(served: np.ndarray, native: np.ndarray) -> None:
    served, native = served.reshape(len(served), -1), native.reshape(len(native), -1).astype(np.float64)
    assert served.shape == native.shape
    assert (np.abs(served - native) <= 1e-4 * np.maximum(1.0, np.abs(native))).all(), \
        float(np.abs(served - native).max())


def check_contract(meta: dict, folder: Path) -> None:
    """docs/byom.md: the keys, their types, and files that exist."""
    canonical_json(meta)  # plain JSON, finite numbers only
    assert json.loads(json.dumps(meta)) == meta
    assert meta["source"] == "push"
    assert (folder / meta["runtime"]["file"]).is_file()
    assert meta["runtime"]["kind"] in ("onnxruntime", "xgboost", "lightgbm")
    sig = meta["signature"]
    assert sig["kind"] in ("regression", "classification", "series", "text")
    for tensor in sig["inputs"] + sig["outputs"]:
        assert set(tensor) == {"name", "dtype", "shape"}
        assert all(isinstance(d, int) and (d == -1 or d > 0) for d in tensor["shape"])
    names = {t["name"] for t in sig["outputs"]}
    if sig["kind"] in ("regression", "series"):
        assert sig["value_output"] in names
    else:
        assert sig["probability_output"] in names
        probability = next(t for t in sig["outputs"] if t["name"] == sig["probability_output"])
        assert probability["shape"] == [-1, len(sig["classes"])]
        assert len(meta["class_labels"]) == len(sig["classes"])
    assert meta["interfaces"] and set(meta["interfaces"]) <= INTERFACES
    assert meta["interface"] in meta["interfaces"]
    assert meta["interface"] == meta["interfaces"][0] or meta["interface"] != ""
    if sig["kind"] != "text":
        (first,) = sig["inputs"]
        width = first["shape"][1]
        assert sig["kind"] == "series" or len(meta["feature_names"]) == width
    if "reference" in meta:
        reference = np.load(folder / meta["reference"]["file"], allow_pickle=False)
        assert reference.dtype == np.float64 and len(reference) == meta["reference"]["sample_rows"]
        assert len(meta["training_stats"]["mean"]) == len(meta["training_stats"]["std"])
    if meta["runtime"]["kind"] != "onnxruntime" or "native" in meta:
        assert (folder / meta["native"]["file"]).is_file()
        conversion = meta["conversion"]
        assert set(conversion) == {"to", "served", "rows", "max_abs_diff", "tolerance", "labels_identical", "reason"}
        assert conversion["served"] == ("onnx" if meta["runtime"]["kind"] == "onnxruntime" else "native")
        assert bool(conversion["reason"]) == (conversion["served"] == "native")
        assert (folder / "model.onnx").exists() == (conversion["served"] == "onnx")
