"""bench/byom.py's two models and section A: an XGBoost classifier and a scikit-learn pipeline, trained here
on synthetic data, their ONNX conversions, the files each server loads, and onnxruntime vs the library's
own predict at batch 1 and 64.

Files written for the servers (one folder per model):
  xgboost:  model.ubj (XGBClassifier.save_model: what mlmesh imports and mlserver-xgboost loads)
  sklearn:  model.onnx (skl2onnx, zipmap off: what mlmesh imports) and model.joblib (a pickle: MLServer's
            format for mlserver-sklearn, loaded only in the bench's MLServer environment, never by mlmesh)
  both:     reference.csv (a sample of the training rows, header f0..fN: the push's reference)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FEATURES = 16
TREES = 50
BATCHES = (1, 64)
REFERENCE_ROWS = 500


@dataclass
class BenchModel:
    """One model as each runtime sees it; `native` and `onnx` take float32 rows and answer P(class 1)."""

    name: str
    title: str
    folder: Path
    push_file: Path                 # what mlmesh's push gets
    mlserver_file: Path             # what MLServer's runtime loads
    mlserver_runtime: str           # model-settings.json "implementation"
    native_label: str
    native: Callable[[np.ndarray], np.ndarray]
    onnx: Callable[[np.ndarray], np.ndarray]
    extra_native: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, FEATURES), np.float32))

    @property
    def reference(self) -> Path:
        return self.folder / "reference.csv"


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=4000, n_features=FEATURES, n_informative=10, n_redundant=3,
                               class_sep=0.8, random_state=seed)
    return x.astype(np.float32), y


def _write_reference(folder: Path, x: np.ndarray) -> None:
    header = ",".join(f"f{i}" for i in range(x.shape[1]))
    np.savetxt(folder / "reference.csv", x[:REFERENCE_ROWS].astype(np.float64), delimiter=",", header=header,
               comments="", fmt="%.9g")


def _ort_session(data: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _probability_output(session) -> tuple[str, str]:
    """(input name, the [N, C] float probability output's name) of a converted classifier."""
    outputs = [o for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape or []) == 2]
    if len(outputs) != 1:
        raise RuntimeError(f"no single probability output among {[(o.name, o.type) for o in session.get_outputs()]}")
    return session.get_inputs()[0].name, outputs[0].name


def xgboost_model(root: Path) -> BenchModel:
    import xgboost as xgb
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    folder = root / "xgboost"
    folder.mkdir(parents=True)
    x, y = _data(seed=1)
    model = xgb.XGBClassifier(n_estimators=TREES, max_depth=6, learning_rate=0.1, n_jobs=1,
                              objective="binary:logistic", random_state=0)
    model.fit(x, y)
    model.save_model(folder / "model.ubj")
    booster = model.get_booster()
    booster.feature_names = None   # onnxmltools needs f0..fN
    onnx_model = convert_xgboost(model, initial_types=[("input", FloatTensorType([None, FEATURES]))],
                                 target_opset=15)
    session = _ort_session(onnx_model.SerializeToString())
    input_name, output = _probability_output(session)
    _write_reference(folder, x)
    booster.set_param({"nthread": 1})   # mlmesh's native runtime: the serving process's one model thread here
    return BenchModel(
        name="xgboost", title=f"XGBoost classifier ({TREES} trees, depth 6, {FEATURES} features)", folder=folder,
        push_file=folder / "model.ubj", mlserver_file=folder / "model.ubj",
        mlserver_runtime="mlserver_xgboost.XGBoostModel", native_label="Booster.inplace_predict",
        native=lambda rows: booster.inplace_predict(rows, validate_features=False),
        onnx=lambda rows: session.run([output], {input_name: rows})[0][:, 1],
        extra_native={"XGBClassifier.predict_proba (MLServer's)":
                      lambda rows: model.predict_proba(rows)[:, 1]},
        rows=x[:256])


def sklearn_model(root: Path) -> BenchModel:
    import joblib
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    folder = root / "sklearn"
    folder.mkdir(parents=True)
    x, y = _data(seed=2)
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("model", GradientBoostingClassifier(n_estimators=TREES, max_depth=3, random_state=0))])
    pipeline.fit(x, y)
    onnx_model = convert_sklearn(pipeline, initial_types=[("input", FloatTensorType([None, FEATURES]))],
                                 options={id(pipeline.steps[-1][1]): {"zipmap": False}}, target_opset=15)
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    joblib.dump(pipeline, folder / "model.joblib")   # MLServer's format: a pickle, for its environment only
    session = _ort_session(onnx_model.SerializeToString())
    input_name, output = _probability_output(session)
    _write_reference(folder, x)
    return BenchModel(
        name="sklearn", title=f"scikit-learn StandardScaler + GradientBoostingClassifier ({TREES} trees, depth 3)",
        folder=folder, push_file=folder / "model.onnx", mlserver_file=folder / "model.joblib",
        mlserver_runtime="mlserver_sklearn.SKLearnModel", native_label="Pipeline.predict_proba",
        native=lambda rows: pipeline.predict_proba(rows)[:, 1],
        onnx=lambda rows: session.run([output], {input_name: rows})[0][:, 1], rows=x[:256])


def build_models(root: Path) -> list[BenchModel]:
    return [xgboost_model(root), sklearn_model(root)]


def per_call_us(fn: Callable[[np.ndarray], object], rows: np.ndarray, budget_s: float) -> float:
    """Median over blocks of back-to-back calls of the mean time per call, in µs (after a warm-up)."""
    for _ in range(20):
        fn(rows)
    start = time.perf_counter()
    fn(rows)
    once = max(time.perf_counter() - start, 1e-7)
    per_block = max(1, int(0.02 / once))   # ~20 ms blocks
    blocks: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(blocks) < 5 or (time.perf_counter() < deadline and len(blocks) < 200):
        start = time.perf_counter()
        for _ in range(per_block):
            fn(rows)
        blocks.append((time.perf_counter() - start) / per_block)
    return float(np.median(blocks)) * 1e6


def parity(model: BenchModel) -> float:
    """max |ONNX - native| of P(class 1) on the model's sample rows."""
    return float(np.max(np.abs(np.asarray(model.onnx(model.rows), np.float64)
                               - np.asarray(model.native(model.rows), np.float64))))
