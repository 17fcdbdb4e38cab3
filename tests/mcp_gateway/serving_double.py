"""A contract double of `mlmesh.v1.Serving`, for the gateway tests that need to see each call's principal and
metadata (tests/mcp_gateway/test_real_serving.py runs the tools against the real service).

It runs behind the mesh's real ServiceHost (the real interceptor, token verifier for audience
"serving" and the scopes the serving service declares), so tokens, scopes, field errors and status
codes cross a real gRPC boundary; only the models are arithmetic. It records every call's principal and
metadata, which is how tests prove the gateway called it in its own name (and how often).
"""

from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass, field

from mlmesh.v1 import common_pb2, serving_pb2, serving_pb2_grpc
from services.core.auth.principal import Principal, current_principal
from services.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.core.grpc.server import ServiceHost
from services.core.settings import ServerSettings
from services.serving.server import METHOD_SCOPES as SERVING_METHOD_SCOPES

_S = "/mlmesh.v1.Serving/"
# The real service's own table (ResumeSession needs serving.deploy, the kill switch serving.halt): never a copy
# that can drift from it.
METHOD_SCOPES = {method: scope for method, scope in SERVING_METHOD_SCOPES.items() if method.startswith(_S)}
FEATURES = 3


@dataclass
class Seen:
    method: str
    principal: Principal | None
    metadata: dict[str, str]


@dataclass
class ServingDouble(serving_pb2_grpc.ServingServicer):
    sessions: dict[str, serving_pb2.ServingSession] = field(default_factory=dict)
    calls: list[Seen] = field(default_factory=list)

    def _seen(self, method: str, context) -> None:
        self.calls.append(Seen(method, current_principal(), dict(context.invocation_metadata() or ())))

    def _ready(self, session_id: str, kind: int) -> serving_pb2.ServingSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}", field="session_id")
        if session.state == serving_pb2.SESSION_STATE_HALTED:
            raise Unavailable(f"session {session_id} is halted: {session.halt_reason}")
        if session.interface != kind:
            raise FailedPrecondition(f"session {session_id} does not serve this interface", field="session_id")
        return session

    def _meta(self, session: serving_pb2.ServingSession, batch: int) -> serving_pb2.ResponseMeta:
        return serving_pb2.ResponseMeta(session_id=session.id, artifact_id=session.artifact_id, batch_size=batch,
                                        queue_ms=0.1, compute_ms=0.2)

    async def Deploy(self, request, context):
        self._seen("Deploy", context)
        if not request.model:
            raise InvalidArgument("is required", field="model")
        session = serving_pb2.ServingSession(
            id=request.session_id or uuid.uuid4().hex[:12], model=request.model,
            artifact_id="sha256:" + "ab" * 32, interface=request.interface, state=serving_pb2.SESSION_STATE_READY,
            executor=serving_pb2.EXECUTOR_KIND_IN_PROCESS, batching=request.batching,
            rule_pack=request.rule_pack or "ood_default", replica="double-0")
        session.created_at.GetCurrentTime()
        self.sessions[session.id] = session
        return session

    async def ListSessions(self, request, context):
        self._seen("ListSessions", context)
        return serving_pb2.ListSessionsResponse(sessions=[
            s for s in self.sessions.values() if not request.state or s.state == request.state])

    async def HaltSession(self, request, context):
        self._seen("HaltSession", context)
        session = self.sessions.get(request.session_id)
        if session is None:
            raise NotFound(f"no session {request.session_id}", field="session_id")
        session.state, session.halt_reason = serving_pb2.SESSION_STATE_HALTED, request.reason or "halted"
        return session

    async def HaltAll(self, request, context):
        self._seen("HaltAll", context)
        results = []
        for session in self.sessions.values():
            session.state, session.halt_reason = serving_pb2.SESSION_STATE_HALTED, request.reason
            results.append(serving_pb2.HaltResult(replica="double-0", session_id=session.id, halted=True))
        return serving_pb2.HaltAllResponse(results=results, halted=len(results))

    async def Predict(self, request, context):
        self._seen("Predict", context)
        session = self._ready(request.session_id, common_pb2.INTERFACE_KIND_PREDICTOR)
        rows = [list(row.values) or [row.named[k] for k in sorted(row.named)] for row in request.rows]
        if not rows:
            raise InvalidArgument("no rows", field="rows")
        # as the real service refuses them: the whole `rows`, never one row by index
        if len({len(values) for values in rows}) > 1:
            raise InvalidArgument("rows must all have the same number of values", field="rows")
        if len(rows[0]) != FEATURES:
            raise InvalidArgument(f"TensorShapeGuard: expected {FEATURES} features per row, got {len(rows[0])}",
                                  field="rows")
        out = [serving_pb2.Prediction(values=[sum(values)]) for values in rows]
        return serving_pb2.PredictResponse(predictions=out, meta=self._meta(session, len(out)))

    async def Forecast(self, request, context):
        self._seen("Forecast", context)
        session = self._ready(request.session_id, common_pb2.INTERFACE_KIND_FORECASTER)
        return serving_pb2.ForecastResponse(forecast=[request.history[-1]] * request.horizon,
                                            meta=self._meta(session, 1))

    async def Classify(self, request, context):
        self._seen("Classify", context)
        session = self._ready(request.session_id, common_pb2.INTERFACE_KIND_CLASSIFIER)
        labels = ["bear", "bull"]
        scores = [serving_pb2.ClassScore(label="bear", probability=0.25),
                  serving_pb2.ClassScore(label="bull", probability=0.75)]
        out = [serving_pb2.Classification(label=labels[sum(r.values) > 0], probability=0.75, scores=scores)
               for r in request.rows]
        return serving_pb2.ClassifyResponse(classifications=out, meta=self._meta(session, len(out)))

    async def Segment(self, request, context):
        self._seen("Segment", context)
        session = self._ready(request.session_id, common_pb2.INTERFACE_KIND_SEGMENTER)
        series, half = list(request.series), len(request.series) // 2
        segments = [serving_pb2.Segment(start=a, end=b, mean=statistics.fmean(series[a:b]),
                                        stddev=statistics.pstdev(series[a:b]))
                    for a, b in ((0, half), (half, len(series)))]
        return serving_pb2.SegmentResponse(change_points=[half], segments=segments, meta=self._meta(session, 1))

    async def Analyze(self, request, context):
        self._seen("Analyze", context)
        session = self._ready(request.session_id, common_pb2.INTERFACE_KIND_ANALYZER)
        out = [serving_pb2.Analysis(label="positive" if "good" in t else "negative",
                                    score=0.5 if "good" in t else -0.5, scores={"positive": 0.5})
               for t in request.texts]
        return serving_pb2.AnalyzeResponse(analyses=out, meta=self._meta(session, len(out)))


async def start_double(verifier) -> tuple[ServiceHost, ServingDouble, str]:
    double = ServingDouble()
    host = ServiceHost("serving", ServerSettings(), verifier, METHOD_SCOPES)
    host.add(lambda s: serving_pb2_grpc.add_ServingServicer_to_server(double, s), ["mlmesh.v1.Serving"])
    port = await host.start("127.0.0.1", 0)
    return host, double, f"127.0.0.1:{port}"
