"""Real tiny imported models, trained here with fixed seeds, each as the folder an artifact holds and the
metadata of docs/byom.md written by hand (what the puller records), with the library's own predict as the
reference a served answer must equal."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
WINDOW = 8


@dataclass
class Imported:
    name: str
    framework: str
    folder: Path
    metadata: dict[str, Any]
    reference: Callable[[np.ndarray], dict[str, np.ndarray]]   # rows -> the library's own outputs
    rows: np.ndarray                                          # sample rows (float64)
    extra: dict[str, Any] = field(default_factory=dict)


def _stats(x: np.ndarray) -> dict[str, list[float]]:
    return {"mean": x.mean(0).round(6).tolist(), "std": x.std(0).clip(1e-6).round(6).tolist()}


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


def tensor(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def iris_logistic(folder: Path) -> Imported:
    """scikit-learn LogisticRegression -> ONNX (skl2onnx, zipmap off): label int64 [-1], probabilities [-1, 3]."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    model = LogisticRegression(max_iter=500).fit(x, y)
    folder.mkdir(parents=True)
    onx = to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False}, target_opset=17)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    np.save(folder / "reference.npy", x[::3], allow_pickle=False)
    metadata = {
        "source": "push",
        "runtime": {"kind": "onnxruntime", "file": "model.onnx"},
        "signature": {"inputs": [tensor("X", "float32", [-1, 4])],
                      "outputs": [tensor("label", "int64", [-1]), tensor("probabilities", "float32", [-1, 3])],
                      "kind": "classification", "probability_output": "probabilities", "label_output": "label",
                      "classes": ["0", "1", "2"]},
        "interfaces": ["classifier"], "interface": "classifier", "feature_names": IRIS_FEATURES,
        "class_labels": IRIS_LABELS, "training_stats": _stats(x),
        "reference": {"rows": 150, "sample_rows": 50, "file": "reference.npy"},
    }
    reference = lambda rows: {"label": model.predict(rows.astype(np.float32)),  # noqa: E731
                              "probabilities": model.predict_proba(rows.astype(np.float32))}
    return Imported("iris_logistic", "onnx", folder, metadata, reference, x)


def iris_boosted_regressor(folder: Path) -> Imported:
    """scaler + GradientBoostingRegressor pipeline -> ONNX: petal width from the three other measures."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, _ = _iris()
    features, target = x[:, :3], x[:, 3]
    model = make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=25, max_depth=2,
                                                                      random_state=0)).fit(features, target)
    folder.mkdir(parents=True)
    onx = to_onnx(model, features[:1].astype(np.float32), target_opset=17)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    metadata = {
        "source": "push",
        "runtime": {"kind": "onnxruntime", "file": "model.onnx"},
        "signature": {"inputs": [tensor("X", "float32", [-1, 3])], "outputs": [tensor("variable", "float32", [-1, 1])],
                      "kind": "regression", "value_output": "variable"},
        "interfaces": ["predictor"], "interface": "predictor", "feature_names": IRIS_FEATURES[:3],
        # no training_stats: the session says its OOD rule has nothing to check against
    }
    reference = lambda rows: {"variable": model.predict(rows.astype(np.float32))}  # noqa: E731
    return Imported("iris_gbr", "onnx", folder, metadata, reference, features)


def xgboost_binary(folder: Path) -> Imported:
    """An XGBoost binary:logistic booster served natively (its .ubj), best_iteration honoured."""
    import xgboost as xgb

    x, y = _iris()
    binary = (y == 2).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "nthread": 1, "seed": 0},
                        xgb.DMatrix(x, label=binary, feature_names=IRIS_FEATURES), num_boost_round=12)
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.ubj"))
    trees = 9  # as if best_iteration were 8: the served booster must use only these
    metadata = {
        "source": "push",
        "runtime": {"kind": "xgboost", "file": "model.ubj", "iteration_range": [0, trees]},
        "native": {"kind": "xgboost", "file": "model.ubj"},
        "signature": {"inputs": [tensor("input", "float32", [-1, 4])],
                      "outputs": [tensor("label", "int64", [-1]), tensor("probabilities", "float32", [-1, 2])],
                      "kind": "classification", "probability_output": "probabilities", "label_output": "label",
                      "classes": ["0", "1"]},
        "interfaces": ["classifier"], "interface": "classifier", "feature_names": IRIS_FEATURES,
        "class_labels": ["other", "virginica"], "training_stats": _stats(x),
        "conversion": {"to": "onnx", "served": "native", "reason": "no reference sample to prove parity on"},
    }

    def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
        p = booster.predict(xgb.DMatrix(rows.astype(np.float32), feature_names=IRIS_FEATURES),
                            iteration_range=(0, trees))
        return {"probabilities": np.stack([1 - p, p], axis=1), "label": (p > 0.5).astype(np.int64)}

    return Imported("xgb_binary", "xgboost", folder, metadata, reference, x)


def lightgbm_regressor(folder: Path) -> Imported:
    """A LightGBM regression booster served natively (its text model)."""
    import lightgbm as lgb

    x, _ = _iris()
    features, target = x[:, :3], x[:, 3]
    booster = lgb.train({"objective": "regression", "num_leaves": 7, "learning_rate": 0.2, "verbose": -1,
                         "num_threads": 1, "seed": 0, "min_data_in_leaf": 5},
                        lgb.Dataset(features, target, feature_name=IRIS_FEATURES[:3]), num_boost_round=15)
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.txt"))
    metadata = {
        "source": "push",
        "runtime": {"kind": "lightgbm", "file": "model.txt"},
        "native": {"kind": "lightgbm", "file": "model.txt"},
        "signature": {"inputs": [tensor("input", "float32", [-1, 3])], "outputs": [tensor("value", "float32", [-1])],
                      "kind": "regression", "value_output": "value"},
        "interfaces": ["predictor"], "interface": "predictor", "feature_names": IRIS_FEATURES[:3],
        "training_stats": _stats(features),
        "conversion": {"to": "onnx", "served": "native", "reason": "parity failed on the reference sample"},
    }
    reference = lambda rows: {"value": booster.predict(rows.astype(np.float32))}  # noqa: E731
    return Imported("lgb_regressor", "lightgbm", folder, metadata, reference, features)


def _series(n: int = 240) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return 50 + 4 * np.sin(t / 6) + np.random.default_rng(3).normal(0, 0.1, n)


def torch_window(folder: Path) -> Imported:
    """A torch MLP over a window of WINDOW values -> the next one, exported with torch.onnx.export (dynamo),
    its weights in external data beside the graph (model.onnx.data)."""
    import torch

    series = _series()
    windows = np.stack([series[i:i + WINDOW] for i in range(len(series) - WINDOW)])
    targets = series[WINDOW:]
    mean, std = float(series.mean()), float(series.std())

    class WindowMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(WINDOW, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def forward(self, x):
            return self.net((x - mean) / std) * std + mean

    torch.manual_seed(0)
    module = WindowMLP()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.02)
    xs, ys = torch.tensor(windows, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)[:, None]
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(module(xs), ys).backward()
        optimizer.step()
    module.eval()
    folder.mkdir(parents=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (xs[:4],), str(folder / "model.onnx"), input_names=["window"],
                          output_names=["next_value"], dynamic_shapes={"x": {0: batch}}, dynamo=True,
                          external_data=True, verbose=False)
    assert (folder / "model.onnx.data").is_file()
    metadata = {
        "source": "push",
        "runtime": {"kind": "onnxruntime", "file": "model.onnx"},
        "signature": {"inputs": [tensor("window", "float32", [-1, WINDOW])],
                      "outputs": [tensor("next_value", "float32", [-1, 1])],
                      "kind": "series", "value_output": "next_value"},
        "interfaces": ["forecaster", "predictor"], "interface": "forecaster", "window": WINDOW,
        "feature_names": ["value"], "training_stats": _stats(series[:, None]),  # the series: one column
    }

    def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return {"next_value": module(torch.tensor(rows, dtype=torch.float32)).numpy()}

    return Imported("torch_window", "onnx", folder, metadata, reference, windows, {"series": series})


HEADLINES = [("stocks rally on strong earnings", "positive"), ("shares plunge after weak guidance", "negative"),
             ("market flat ahead of fed meeting", "neutral"), ("record profits lift the index", "positive"),
             ("losses deepen as demand collapses", "negative"), ("trading quiet in a calm session", "neutral")]


def news_text(folder: Path) -> Imported:
    """TfidfVectorizer + LogisticRegression -> ONNX with a string input [-1, 1] and a string label output
    (lowercase off: ONNX Runtime's StringNormalizer needs an installed locale)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, labels = zip(*(HEADLINES * 5))
    model = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression(max_iter=300)).fit(texts, labels)
    folder.mkdir(parents=True)
    onx = to_onnx(model, initial_types=[("text", StringTensorType([None, 1]))],
                  options={id(model.steps[-1][1]): {"zipmap": False}}, target_opset=17)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    counts = np.array([len(t.split()) for t in texts], dtype=np.float64)
    classes = [str(c) for c in model.classes_]
    metadata = {
        "source": "push",
        "runtime": {"kind": "onnxruntime", "file": "model.onnx"},
        "signature": {"inputs": [tensor("text", "string", [-1, 1])],
                      "outputs": [tensor("label", "string", [-1]), tensor("probabilities", "float32", [-1, 3])],
                      "kind": "text", "probability_output": "probabilities", "label_output": "label",
                      "classes": classes},
        "interfaces": ["classifier", "analyzer"], "interface": "analyzer", "class_labels": classes,
        "text_stats": {"token_count": {"mean": [float(counts.mean())], "std": [3.0]}},
    }

    def reference(rows) -> dict[str, np.ndarray]:
        return {"label": model.predict(list(rows)), "probabilities": model.predict_proba(list(rows))}

    return Imported("news_text", "onnx", folder, metadata, reference, np.array([t for t, _ in HEADLINES]))


BUILDERS = {"iris_logistic": iris_logistic, "iris_gbr": iris_boosted_regressor, "xgb_binary": xgboost_binary,
            "lgb_regressor": lightgbm_regressor, "torch_window": torch_window, "news_text": news_text}
