"""The public client's call discipline against a real gRPC server whose Serving answers what each test
scripts: idempotent calls (inference, listing) retried on UNAVAILABLE within their deadline, never
Deploy; every call carries a deadline; errors come back as typed exceptions with the field."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest

import mlmesh
from mlmesh.v1 import common_pb2, serving_pb2, serving_pb2_grpc


class ScriptedServing(serving_pb2_grpc.ServingServicer):
    def __init__(self) -> None:
        self.failures: dict[str, list[tuple[grpc.StatusCode, str, str]]] = {}
        self.calls: dict[str, int] = {}
        self.deadlines: list[float | None] = []
        self.sessions: list[serving_pb2.ServingSession] = []
        self.lock = threading.Lock()

    def _enter(self, method: str, context) -> None:
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            self.deadlines.append(context.time_remaining())
            script = self.failures.get(method) or []
            failure = script.pop(0) if script else None
        if failure:
            code, details, field = failure
            if field:
                context.set_trailing_metadata((("mlmesh-error-field", field),))
            context.abort(code, f"{field}: {details}" if field else details)

    def Predict(self, request, context):
        self._enter("Predict", context)
        return serving_pb2.PredictResponse(predictions=[serving_pb2.Prediction(values=[sum(r.values)])
                                                        for r in request.rows])

    def ListSessions(self, request, context):
        self._enter("ListSessions", context)
        return serving_pb2.ListSessionsResponse(sessions=self.sessions)

    def Deploy(self, request, context):
        self._enter("Deploy", context)
        session = serving_pb2.ServingSession(id="s-new", model=request.model, interface=request.interface,
                                             state=serving_pb2.SESSION_STATE_READY)
        self.sessions.append(session)
        return session


@pytest.fixture
def serving():
    servicer = ScriptedServing()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    serving_pb2_grpc.add_ServingServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, "draining", "")


def test_inference_is_retried_on_unavailable_and_carries_a_deadline(serving):
    servicer, address = serving
    servicer.failures["Predict"] = [UNAVAILABLE, UNAVAILABLE]
    with mlmesh.Mesh(address, "tok") as mesh:
        predictions = mesh.predictor(session="s-1", timeout_s=5).predict([[1.0, 2.0], [3.0, 4.0]])
    assert [p.value for p in predictions] == [3.0, 7.0]
    assert servicer.calls["Predict"] == 3
    assert all(d is not None and d < 5.5 for d in servicer.deadlines), servicer.deadlines   # ~5 s, wire rounding


def test_retries_stop_at_the_deadline(serving):
    servicer, address = serving
    servicer.failures["Predict"] = [UNAVAILABLE] * 1000
    started = time.monotonic()
    with mlmesh.Mesh(address, "tok") as mesh, pytest.raises(mlmesh.Unavailable):
        mesh.predictor(session="s-1", timeout_s=0.5).predict([[1.0]])
    assert time.monotonic() - started < 3


def test_errors_come_back_typed_with_their_field_and_are_not_retried(serving):
    servicer, address = serving
    servicer.failures["Predict"] = [(grpc.StatusCode.INVALID_ARGUMENT, "expected 4 features", "rows[0]")]
    with mlmesh.Mesh(address, "tok") as mesh, pytest.raises(mlmesh.InvalidArgument) as err:
        mesh.predictor(session="s-1").predict([[1.0]])
    assert err.value.field == "rows[0]" and err.value.message == "expected 4 features"
    assert servicer.calls["Predict"] == 1


CHURN, OTHER = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_a_session_is_found_or_deployed_once_and_deploy_is_never_retried(serving):
    servicer, address = serving
    servicer.sessions.append(serving_pb2.ServingSession(
        id="s-old", model="churn@prod", artifact_id=CHURN, interface=common_pb2.INTERFACE_KIND_CLASSIFIER,
        state=serving_pb2.SESSION_STATE_READY))
    with mlmesh.Mesh(address, "tok") as mesh:
        assert mesh.classifier(CHURN).session_id == "s-old"     # found by the artifact it serves
        assert mesh.predictor(CHURN).session_id == "s-new"      # no predictor session: one is deployed, pinned
        assert servicer.sessions[-1].model == CHURN
        assert mesh.predictor(CHURN).session_id == "s-new"      # and then found
        assert servicer.calls["Deploy"] == 1
        servicer.failures["Deploy"] = [UNAVAILABLE]
        with pytest.raises(mlmesh.Unavailable):
            mesh.predictor(OTHER)
    assert servicer.calls["Deploy"] == 2


def test_a_halted_session_is_never_routed_around(serving):
    """The kill switch: a halted session of the model refuses the caller; no new session is deployed."""
    servicer, address = serving
    servicer.sessions.append(serving_pb2.ServingSession(
        id="s-halted", model=CHURN, artifact_id=CHURN, interface=common_pb2.INTERFACE_KIND_PREDICTOR,
        state=serving_pb2.SESSION_STATE_HALTED, halt_reason="drift"))
    with mlmesh.Mesh(address, "tok") as mesh, pytest.raises(mlmesh.Unavailable) as refused:
        mesh.classifier(CHURN)
    assert "s-halted" in refused.value.message and "drift" in refused.value.message
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and refused.value.field == "model"
    assert servicer.calls.get("Deploy", 0) == 0


def test_rows_by_name_and_arrays(serving):
    import numpy as np

    _, address = serving
    with mlmesh.Mesh(address, "tok") as mesh:
        predictor = mesh.predictor(session="s-1")
        assert [p.value for p in predictor.predict(np.array([[1.0, 1.0], [2.0, 2.0]]))] == [2.0, 4.0]
        assert [p.value for p in predictor.predict([1.0, 2.0, 3.0])] == [6.0]   # one row
