"""Imported models deployed on the serving service (in-process executor) through the registry and the
artifact toolkit: every answer equals the library's own predict (max |diff| <= 1e-4 x max(1, |y|), the
same labels), the interfaces bind from the recorded signature, features are checked by name, the rules
use the recorded statistics (or say they have none), and KServe v2 shows the model's own tensors."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import InferInput, InferRequestedOutput

from mlmesh.v1 import serving_pb2
from services.core.auth.policy import ALL_SCOPES
from tests.serving.imported.models import IRIS_FEATURES
from tests.serving.service.conftest import KINDS, SUBJECT, error_field
from tests.serving.service.test_typed import rows_msg

pytestmark = pytest.mark.asyncio(loop_scope="session")


def assert_close(served, expected) -> None:
    served, expected = np.asarray(served, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert served.shape == expected.shape
    assert np.all(np.abs(served - expected) <= 1e-4 * np.maximum(1.0, np.abs(expected))), (served, expected)


def labels_of(model, codes) -> list[str]:
    """The model's own class values -> the display labels (class_labels in probability order)."""
    classes = model.metadata["signature"]["classes"]
    shown = model.metadata.get("class_labels") or classes
    return [shown[classes.index(str(c))] for c in codes]


async def _classify(stub, session_id: str, rows) -> list:
    answer = await stub.Classify(serving_pb2.ClassifyRequest(session_id=session_id, rows=rows_msg(rows)))
    return list(answer.classifications)


async def test_every_imported_model_answers_as_its_library(imported_stub, published):
    stub = imported_stub
    # classifiers: sklearn via ONNX (int64 labels), XGBoost native (binary: [1-p, p], 9 of 12 trees)
    for name in ("iris_logistic", "xgb_binary"):
        model = published[name].model
        session = await stub.deploy(published[name].artifact_id, session_id=f"im-{name}")
        assert session.interface == KINDS["classifier"] and session.executor == serving_pb2.EXECUTOR_KIND_IN_PROCESS
        rows = model.rows[::7]
        got = await _classify(stub, f"im-{name}", rows.tolist())
        expected = model.reference(rows)
        labels = model.metadata["class_labels"]
        assert [c.label for c in got] == labels_of(model, expected["label"])
        assert_close([[{s.label: s.probability for s in c.scores}[label] for label in labels] for c in got],
                     expected["probabilities"])

    # regressors: a scaler + gradient-boosting pipeline via ONNX, LightGBM native
    for name, output in (("iris_gbr", "variable"), ("lgb_regressor", "value")):
        model = published[name].model
        await stub.deploy(f"{model.name}@prod", session_id=f"im-{name}")
        rows = model.rows[::5]
        answer = await stub.Predict(serving_pb2.PredictRequest(session_id=f"im-{name}", rows=rows_msg(rows.tolist())))
        assert_close([p.values[0] for p in answer.predictions], np.ravel(model.reference(rows)[output]))

    # a torch window MLP exported with dynamo (external data): iterated for the horizon, iteration-level
    window = published["torch_window"].model
    session = await stub.deploy(published["torch_window"].artifact_id, session_id="im-window")
    assert session.interface == KINDS["forecaster"] and session.batching.iteration_level
    series = window.extra["series"]
    for start, horizon in ((0, 6), (50, 3)):
        history = series[start:start + 30].tolist()
        answer = await stub.Forecast(serving_pb2.ForecastRequest(session_id="im-window", history=history,
                                                                 horizon=horizon))
        values, expected = list(history[-8:]), []
        for _ in range(horizon):  # the library's own module, iterated the same way in float32
            expected.append(float(window.reference(np.asarray([values[-8:]], dtype=np.float32))["next_value"][0, 0]))
            values.append(expected[-1])
        assert_close(answer.forecast, expected)
    # ... and the same model as a predictor of one step per window row
    await stub.deploy(published["torch_window"].artifact_id, interface=KINDS["predictor"], session_id="im-window-p")
    rows = window.rows[:4]
    answer = await stub.Predict(serving_pb2.PredictRequest(session_id="im-window-p", rows=rows_msg(rows.tolist())))
    assert_close([p.values[0] for p in answer.predictions], window.reference(rows)["next_value"][:, 0])

    # text: string input, string labels, as an analyzer (its default) and a classifier
    news = published["news_text"].model
    texts = ["profits rally strongly", "demand plunge losses", "a quiet session"]
    expected = news.reference(texts)
    await stub.deploy(published["news_text"].artifact_id, session_id="im-news")
    answer = await stub.Analyze(serving_pb2.AnalyzeRequest(session_id="im-news", texts=texts))
    assert [a.label for a in answer.analyses] == list(expected["label"])
    await stub.deploy(published["news_text"].artifact_id, interface=KINDS["classifier"], session_id="im-news-c")
    answer = await stub.Classify(serving_pb2.ClassifyRequest(session_id="im-news-c", texts=texts))
    assert [c.label for c in answer.classifications] == list(expected["label"])
    assert_close([c.probability for c in answer.classifications], expected["probabilities"].max(axis=1))


async def test_an_interface_the_model_does_not_list_is_refused(imported_stub, published):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await imported_stub.deploy(published["iris_gbr"].artifact_id, interface=KINDS["classifier"])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_field(refused.value) == "interface"
    assert "['predictor']" in refused.value.details() and "classifier" in refused.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await imported_stub.deploy(published["torch_window"].artifact_id, interface=KINDS["analyzer"])
    assert error_field(refused.value) == "interface" and "['forecaster', 'predictor']" in refused.value.details()


async def test_features_by_name_and_the_rules_on_an_imported_model(imported_stub, imported_serving, published):
    stub, logistic = imported_stub, published["iris_logistic"].model
    await stub.deploy(published["iris_logistic"].artifact_id, session_id="im-rules")
    rows = logistic.rows[[3, 60, 120]]
    named = [serving_pb2.FeatureRow(named=dict(zip(IRIS_FEATURES, row))) for row in rows.tolist()]
    answer = await stub.Classify(serving_pb2.ClassifyRequest(session_id="im-rules", rows=named))
    assert [c.label for c in answer.classifications] == labels_of(logistic, logistic.reference(rows)["label"])

    async def refused(rows_message) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Classify(serving_pb2.ClassifyRequest(session_id="im-rules", rows=rows_message))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return caught.value

    unknown = await refused([serving_pb2.FeatureRow(named={**dict(zip(IRIS_FEATURES, rows[0])), "colour": 1.0})])
    assert error_field(unknown) == "rows[0].colour" and "sepal_length" in unknown.details()
    missing = await refused([serving_pb2.FeatureRow(named=dict(zip(IRIS_FEATURES[:3], rows[0])))])
    assert error_field(missing) == "rows[0].petal_width"
    narrow = await refused(rows_msg([[5.0, 3.0, 1.0]]))
    assert "TensorShapeGuard" in narrow.details()
    far = await refused(rows_msg([[5.0, 3.0, 1.4, 40.0]]))   # petal width 40 cm: far outside the training data
    assert "OODGuard" in far.details() and "petal_width" in far.details() and error_field(far) == "rows[0]"
    session = await stub.GetSession(serving_pb2.GetSessionRequest(session_id="im-rules"))
    assert session.stats.rule_trips["OODGuard"] == 1 and session.stats.rule_trips["TensorShapeGuard"] == 1

    # a model without statistics: the session says what its OOD rule cannot check
    await stub.deploy(published["iris_gbr"].artifact_id, session_id="im-nostats")
    notes = (await stub.GetSession(serving_pb2.GetSessionRequest(session_id="im-nostats"))).rule_notes
    assert notes and "OODGuard" in notes[0] and "no training statistics" in notes[0]
    assert imported_serving.manager.get("im-rules").snapshot().rule_notes == ()


def _input(name: str, array: np.ndarray, datatype: str) -> InferInput:
    item = InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    return item


async def test_kserve_shows_and_serves_the_models_own_tensors(imported_stub, imported_serving, published, issuer):
    stub = imported_stub
    headers = {"authorization": f"Bearer {issuer.mint(SUBJECT, 'serving', ALL_SCOPES)}"}
    await stub.deploy(published["iris_logistic"].artifact_id, session_id="kv-iris")
    await stub.deploy(published["news_text"].artifact_id, interface=KINDS["classifier"], session_id="kv-news")
    await stub.deploy(published["torch_window"].artifact_id, session_id="kv-window")
    client = aioclient.InferenceServerClient(imported_serving.address)
    try:
        meta = await client.get_model_metadata("kv-iris", headers=headers, as_json=True)
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "4"]}]
        assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]},
                                   {"name": "label", "datatype": "INT64", "shape": ["-1"]}]
        logistic = published["iris_logistic"].model
        rows = logistic.rows[::11].astype(np.float32)
        result = await client.infer("kv-iris", [_input("X", rows, "FP32")], headers=headers,
                                    outputs=[InferRequestedOutput("label"), InferRequestedOutput("probabilities")])
        expected = logistic.reference(rows)
        assert result.as_numpy("label").dtype == np.int64
        assert result.as_numpy("label").tolist() == expected["label"].tolist()
        assert_close(result.as_numpy("probabilities"), expected["probabilities"])
        with pytest.raises(Exception, match="OODGuard"):  # the rules apply on this path too
            await client.infer("kv-iris", [_input("X", np.array([[5, 3, 1.4, 40]], np.float32), "FP32")],
                               headers=headers)

        meta = await client.get_model_metadata("kv-news", headers=headers, as_json=True)
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": ["-1", "1"]}]
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("probabilities", "FP32"), ("label", "BYTES")]
        news, texts = published["news_text"].model, ["profits rally strongly", "demand plunge losses"]
        result = await client.infer("kv-news", [_input("text", np.array([[t.encode()] for t in texts], object),
                                                       "BYTES")], headers=headers)
        assert [v.decode() for v in result.as_numpy("label")] == list(news.reference(texts)["label"])

        meta = await client.get_model_metadata("kv-window", headers=headers, as_json=True)
        assert meta["inputs"] == [{"name": "window", "datatype": "FP32", "shape": ["-1", "8"]}]
        assert meta["outputs"] == [{"name": "next_value", "datatype": "FP32", "shape": ["-1", "1"]}]
        window = published["torch_window"].model
        rows = window.rows[10:13].astype(np.float32)
        result = await client.infer("kv-window", [_input("window", rows, "FP32")], headers=headers)
        assert_close(result.as_numpy("next_value"), window.reference(rows)["next_value"])
        config = (await client.get_model_config("kv-iris", headers=headers, as_json=True))["config"]
        assert config["input"][0]["dims"] == ["4"] and "mlmesh_rule_notes" not in config.get("parameters", {})
    finally:
        await client.close()


async def test_a_compiled_graph_of_an_imported_model_is_served_with_its_tensors(imported_stub, published, publisher,
                                                                               registry, issuer, tmp_path):
    """The compiler keeps an imported graph's own tensors: its output deploys like the source artifact."""
    from tests.serving.service.test_compiled import _store_and_register

    logistic = published["iris_logistic"]
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes((logistic.model.folder / "model.onnx").read_bytes())
    (tmp_path / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\nmax_batch_size: 32\n')
    record = await _store_and_register(publisher, registry, issuer, tmp_path, logistic.artifact_id,
                                       signer=publisher.kit.signer)
    session = await imported_stub.deploy(f"compiled:{record.id}", session_id="im-compiled")
    assert session.interface == KINDS["classifier"] and session.artifact_id == f"compiled:{record.id}"
    rows = logistic.model.rows[1::9]
    got = await _classify(imported_stub, "im-compiled", rows.tolist())
    assert [c.label for c in got] == labels_of(logistic.model, logistic.model.reference(rows)["label"])
