"""Every kind of model a team brings, trained here with its own library: pushed (through the `mlmesh`
command or the public Python client), served in-process and on Triton, and answering what the library's own
predict answers: max |served - library| <= 1e-4 x max(1, |library|) (float32 graphs against float64
libraries), identical labels.

  scikit-learn   a scaler + gradient boosting pipeline (skl2onnx), a logistic regression (skl2onnx's default
                 export, ZipMap and string classes)
  XGBoost        a classifier's native .ubj and a regressor's native .json (converted at push, proven), and a
                 classifier the user converted to ONNX with onnxmltools
  LightGBM       a regressor's native text model
  PyTorch        an MLP and a 1-D conv net over a window, both exported with torch.onnx.export (the conv net is
                 a forecaster: longer horizons iterate it)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import mlmesh
from mlmesh.v1 import serving_pb2
from tests.byom.conftest import Services
from tests.e2e.conftest import REPO

pytestmark = pytest.mark.asyncio(loop_scope="module")
EXECUTORS = {"in_process": serving_pb2.EXECUTOR_KIND_IN_PROCESS, "triton": serving_pb2.EXECUTOR_KIND_TRITON}
INTERFACE_KINDS = {"predictor": 1, "forecaster": 2, "classifier": 3}


@dataclass
class Case:
    files: dict[str, bytes]
    interface: str
    expected: Callable[[np.ndarray], np.ndarray]   # rows -> values (predictor) or probabilities (classifier)
    labels: list[str] = field(default_factory=list)  # classifier: the probability columns' labels
    push: dict = field(default_factory=dict)
    by_cli: bool = False
    framework: str = "onnx"


def close(served, expected) -> None:
    served = np.asarray(served, dtype=np.float64).reshape(len(expected), -1)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    assert np.all(np.abs(served - expected) <= 1e-4 * np.maximum(1.0, np.abs(expected))), \
        float(np.abs(served - expected).max())


def _user_converted_xgboost(estimator) -> bytes:
    """What a user does with onnxmltools (feature names must be f0..fN for the converter)."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = estimator.get_booster().copy()
    booster.feature_names = None
    converted = convert_xgboost(booster, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=15)
    return converted.SerializeToString()


def _windows(series: np.ndarray, width: int) -> np.ndarray:
    return np.stack([series[i:i + width] for i in range(len(series) - width)])


@pytest.fixture(scope="module")
def cases(data, sk_regressor, sk_classifier, xgb_models, lgb_models, torch_models) -> dict[str, Case]:  # noqa: F811
    import torch

    def torch_out(module):
        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(x.astype(np.float32))).numpy()
        return run

    logistic = sk_classifier.model
    multi, binary = xgb_models["multi"].model, xgb_models["binary"].model
    return {
        "sklearn_pipeline": Case(sk_regressor.files, "predictor", sk_regressor.model.predict, by_cli=True),
        "sklearn_logistic": Case({"model.onnx": sk_classifier.files["zipmap"]}, "classifier", logistic.predict_proba,
                                 [str(c) for c in logistic.classes_]),
        "xgboost_classifier_ubj": Case({"model.ubj": xgb_models["multi"].files["model.ubj"]}, "classifier",
                                       multi.predict_proba, ["0", "1", "2"], by_cli=True, framework="xgboost"),
        "xgboost_regressor_json": Case({"model.json": xgb_models["regressor"].files["model.json"]}, "predictor",
                                       xgb_models["regressor"].model.predict, framework="xgboost"),
        "xgboost_classifier_onnx": Case({"model.onnx": _user_converted_xgboost(binary)}, "classifier",
                                        binary.predict_proba, ["0", "1"]),
        "lightgbm_regressor": Case(lgb_models["regressor"].files, "predictor",
                                   lambda x: lgb_models["regressor"].model.predict(x.astype(np.float64)),
                                   framework="lightgbm"),
        "torch_mlp": Case(torch_models["mlp"].files, "predictor", torch_out(torch_models["mlp"].model), by_cli=True),
        "torch_conv_forecaster": Case(torch_models["conv"].files, "forecaster", torch_out(torch_models["conv"].model),
                                      push={"interface": "forecaster"}),
    }


async def push(services: Services, name: str, case: Case, tmp_path: Path) -> mlmesh.Artifact:
    folder = tmp_path / name
    folder.mkdir()
    for rel, content in case.files.items():
        (folder / rel).write_bytes(content)
    (path,) = [folder / rel for rel in case.files]
    if not case.by_cli:
        with services.client() as client:
            return await asyncio.to_thread(client.push, path, name=name, aliases=["prod"], **case.push)
    args = [sys.executable, "-m", "services.mesh", "push", str(path), "--name", name, "--alias", "prod", "--json"]
    args += [a for key, value in case.push.items() for a in (f"--{key}", str(value))]
    env = {**os.environ, "MLMESH_HOME": str(services.mesh.home), "MLMESH_TOPOLOGY_FILE": str(services.topology_file())}
    done = await asyncio.to_thread(subprocess.run, args, cwd=REPO, env=env, capture_output=True, text=True,
                                   timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with services.client() as client:
        return await asyncio.to_thread(client.artifact, f"{name}@prod")


async def deploy(services: Services, artifact_id: str, interface: str, executor: str, session_id: str):
    with services.client() as client:
        stub, metadata = client.stub("serving"), client.metadata("serving")
        request = serving_pb2.DeployRequest(model=artifact_id, interface=INTERFACE_KINDS[interface],
                                            executor=EXECUTORS[executor], session_id=session_id)
        return await asyncio.to_thread(stub.Deploy, request, metadata=metadata, timeout=180)


def answers(services: Services, case: Case, session_id: str, rows: np.ndarray, series: np.ndarray):
    """The served values (predictor / forecaster) or probabilities in `case.labels` order (classifier)."""
    with services.client() as client:
        if case.interface == "predictor":
            return [p.values for p in client.predictor(session=session_id).predict(rows)]
        if case.interface == "classifier":
            classified = client.classifier(session=session_id).classify(rows)
            return [c.label for c in classified], [[c.scores[label] for label in case.labels] for c in classified]
        return client.forecaster(session=session_id).forecast(series.tolist(), horizon=4).values


@pytest.mark.parametrize("name", ["sklearn_pipeline", "sklearn_logistic", "xgboost_classifier_ubj",
                                  "xgboost_regressor_json", "xgboost_classifier_onnx", "lightgbm_regressor",
                                  "torch_mlp", "torch_conv_forecaster"])
async def test_pushed_served_in_process_and_on_triton_answers_like_the_library(services, cases, data, name,
                                                                              tmp_path):
    case = cases[name]
    artifact = await push(services, name, case, tmp_path)
    assert artifact.framework == case.framework and case.interface in artifact.interfaces, artifact
    served_by = artifact.metadata["runtime"]["kind"]
    assert served_by == "onnxruntime", artifact.metadata.get("conversion")   # boosters: converted and proven
    rows = data.x[:12].astype(np.float64)
    series = np.sin(np.arange(40) / 4.0).astype(np.float64)

    for executor in EXECUTORS:
        session = await deploy(services, artifact.id, case.interface, executor, f"{name}-{executor}".replace("_", "-"))
        assert session.executor == EXECUTORS[executor] and session.state == serving_pb2.SESSION_STATE_READY
        answer = await asyncio.to_thread(answers, services, case, session.id, rows, series)
        if case.interface == "classifier":
            labels, probabilities = answer
            expected = case.expected(rows)
            close(probabilities, expected)
            assert labels == [case.labels[i] for i in expected.argmax(axis=1)], executor
        elif case.interface == "predictor":
            close(answer, case.expected(rows))
        else:   # iterate the window model as the forecaster does: each prediction joins the window
            window, expected = list(series[-16:]), []
            for _ in range(4):
                step = float(case.expected(np.asarray([window[-16:]]))[0, 0])
                expected.append(step)
                window.append(step)
            close(answer, np.asarray(expected).reshape(-1, 1))
