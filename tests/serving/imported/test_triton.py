"""Imported ONNX models on the real Triton binary, started by the serving service: the entry carries the
model's own tensor names and dtypes (int64 and string labels, a string input) and the graph's external
data; answers equal the library's. Native boosters stay in-process: auto placement falls back, an
explicit Triton request is refused with the reason."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from mlmesh.v1 import serving_pb2
from tests.serving.imported.test_served import assert_close, labels_of
from tests.serving.service.conftest import KINDS, SUBJECT, Stub, error_field
from tests.serving.service.test_typed import rows_msg
from tests.serving.triton.conftest import serving_with_triton, triton_setup  # noqa: F401  (setup once)

pytestmark = pytest.mark.asyncio(loop_scope="session")
ALL = ["serving.read", "serving.infer", "serving.deploy", "serving.halt"]
TRITON, IN_PROCESS = serving_pb2.EXECUTOR_KIND_TRITON, serving_pb2.EXECUTOR_KIND_IN_PROCESS


async def test_imported_models_on_the_real_triton(triton_setup, mesh_settings, registry,  # noqa: F811
                                                  published, issuer, tmp_path):
    async with serving_with_triton(mesh_settings, registry.address, tmp_path) as app:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = Stub(channel, issuer.mint(SUBJECT, "serving", ALL))

            # sklearn classifier: int64 label [-1] + probabilities [-1, 3], the model's own names
            logistic = published["iris_logistic"].model
            session = await stub.deploy(published["iris_logistic"].artifact_id, session_id="tri-iris",
                                        executor=TRITON)
            assert session.executor == TRITON
            config = (tmp_path / "models" / "tri-iris" / "config.pbtxt").read_text()
            assert 'name: "X" data_type: TYPE_FP32 dims: [ 4 ]' in config
            assert 'name: "label" data_type: TYPE_INT64' in config
            rows = logistic.rows[::6]
            answer = await stub.Classify(serving_pb2.ClassifyRequest(session_id="tri-iris",
                                                                     rows=rows_msg(rows.tolist())))
            expected = logistic.reference(rows)
            assert [c.label for c in answer.classifications] == labels_of(logistic, expected["label"])
            labels = logistic.metadata["class_labels"]
            assert_close([[{s.label: s.probability for s in c.scores}[n] for n in labels]
                          for c in answer.classifications], expected["probabilities"])

            # the torch window model: its external data copied into the entry; horizons iterated in the scheduler
            window = published["torch_window"].model
            await stub.deploy(published["torch_window"].artifact_id, session_id="tri-window", executor=TRITON)
            assert (tmp_path / "models" / "tri-window" / "1" / "model.onnx.data").is_file()
            history = window.extra["series"][20:50].tolist()
            answer = await stub.Forecast(serving_pb2.ForecastRequest(session_id="tri-window", history=history,
                                                                     horizon=4))
            values, expected_steps = list(history[-8:]), []
            for _ in range(4):
                step = window.reference(np.asarray([values[-8:]], np.float32))["next_value"]
                expected_steps.append(float(step[0, 0]))
                values.append(expected_steps[-1])
            assert_close(answer.forecast, expected_steps)

            # text: a string input and a string label through Triton's BYTES tensors
            news = published["news_text"].model
            await stub.deploy(published["news_text"].artifact_id, interface=KINDS["classifier"],
                              session_id="tri-news", executor=TRITON)
            texts = ["profits rally strongly", "demand plunge losses", "a quiet session"]
            answer = await stub.Classify(serving_pb2.ClassifyRequest(session_id="tri-news", texts=texts))
            expected = news.reference(texts)
            assert [c.label for c in answer.classifications] == list(expected["label"])
            assert_close([c.probability for c in answer.classifications], expected["probabilities"].max(axis=1))

            # native boosters stay in-process: refused on Triton with the reason, auto falls back
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.deploy(published["xgb_binary"].artifact_id, executor=TRITON)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_field(refused.value) == "executor"
            assert "served by the xgboost library in-process: no reference sample" in refused.value.details()
            session = await stub.deploy(published["lgb_regressor"].artifact_id, session_id="tri-lgb")
            assert session.executor == IN_PROCESS
