"""Proto <-> domain for the Serving service; nothing here decides anything.

The typed calls are on the hot path: rows become plain lists (the backends' fast path), and the
answers are built with one message constructor per result.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlmesh.v1 import common_pb2, serving_pb2
from services.core.errors import InvalidArgument
from services.serving.interfaces.calls import AnalyzeCall, ClassifyCall, ForecastCall, PredictCall, SegmentCall
from services.serving.interfaces.results import CallOptions
from services.serving.loading.deployer import BatchingRequest, DeploySpec
from services.serving.sessions.snapshot import Answer, HaltResult, SessionSnapshot, SessionState, SessionStats

INTERFACES = {
    common_pb2.INTERFACE_KIND_PREDICTOR: "predictor", common_pb2.INTERFACE_KIND_FORECASTER: "forecaster",
    common_pb2.INTERFACE_KIND_CLASSIFIER: "classifier", common_pb2.INTERFACE_KIND_SEGMENTER: "segmenter",
    common_pb2.INTERFACE_KIND_ANALYZER: "analyzer",
}
INTERFACE_KINDS = {name: kind for kind, name in INTERFACES.items()}
EXECUTOR_REQUESTS = {serving_pb2.EXECUTOR_KIND_UNSPECIFIED: "auto", serving_pb2.EXECUTOR_KIND_TRITON: "triton",
                     serving_pb2.EXECUTOR_KIND_IN_PROCESS: "in_process"}
EXECUTOR_KINDS = {"triton": serving_pb2.EXECUTOR_KIND_TRITON, "in_process": serving_pb2.EXECUTOR_KIND_IN_PROCESS}
STATES = {SessionState.DEPLOYING: serving_pb2.SESSION_STATE_DEPLOYING,
          SessionState.READY: serving_pb2.SESSION_STATE_READY,
          SessionState.HALTED: serving_pb2.SESSION_STATE_HALTED,
          SessionState.UNDEPLOYED: serving_pb2.SESSION_STATE_UNDEPLOYED}
BREAKER = {"closed": serving_pb2.BREAKER_STATE_CLOSED, "open": serving_pb2.BREAKER_STATE_OPEN,
           "half_open": serving_pb2.BREAKER_STATE_HALF_OPEN}


# ---- proto -> domain ----

def deploy_spec(request: serving_pb2.DeployRequest) -> DeploySpec:
    if request.interface not in INTERFACES and request.interface != common_pb2.INTERFACE_KIND_UNSPECIFIED:
        raise InvalidArgument(f"unknown interface kind {request.interface}", field="interface")
    if request.executor not in EXECUTOR_REQUESTS:
        raise InvalidArgument(f"unknown executor kind {request.executor}", field="executor")
    b = request.batching
    return DeploySpec(
        model=request.model, interface=INTERFACES.get(request.interface),
        batching=BatchingRequest(b.max_batch_size, b.max_queue_delay_us, b.max_queue_size,
                                 b.iteration_level if b.HasField("iteration_level") else None),
        rule_pack=request.rule_pack, executor=EXECUTOR_REQUESTS[request.executor], session_id=request.session_id,
    )


def options(message: serving_pb2.RequestOptions, context) -> CallOptions:
    """Priority and request id from the request; the gRPC deadline becomes the request's timeout."""
    return CallOptions(message.priority, context.time_remaining(), message.request_id)


def rows(messages) -> list:
    """FeatureRows as lists of numbers (in order) or mappings name -> value."""
    out = []
    for index, row in enumerate(messages):
        if row.named:
            if row.values:
                raise InvalidArgument("give values or named, not both", field=f"rows[{index}]")
            out.append(dict(row.named))
        else:
            out.append(list(row.values))
    return out


def predict_call(request: serving_pb2.PredictRequest) -> PredictCall:
    return PredictCall(rows(request.rows))


def forecast_call(request: serving_pb2.ForecastRequest) -> ForecastCall:
    return ForecastCall(list(request.history), request.horizon)


def classify_call(request: serving_pb2.ClassifyRequest) -> ClassifyCall:
    if request.rows and request.texts:
        raise InvalidArgument("give rows or texts, not both", field="texts")
    return ClassifyCall(list(request.texts) if request.texts else rows(request.rows))


def segment_call(request: serving_pb2.SegmentRequest) -> SegmentCall:
    return SegmentCall(list(request.series))


def analyze_call(request: serving_pb2.AnalyzeRequest) -> AnalyzeCall:
    return AnalyzeCall(list(request.texts))


# ---- domain -> proto ----

def meta(answer: Answer) -> serving_pb2.ResponseMeta:
    m = answer.meta
    return serving_pb2.ResponseMeta(session_id=m.session_id, artifact_id=m.artifact_id, batch_size=m.batch_size,
                                    queue_ms=m.queue_ms, compute_ms=m.compute_ms)


def predict_response(answer: Answer) -> serving_pb2.PredictResponse:
    return serving_pb2.PredictResponse(
        predictions=[serving_pb2.Prediction(values=p.values) for p in answer.result], meta=meta(answer))


def forecast_response(answer: Answer) -> serving_pb2.ForecastResponse:
    return serving_pb2.ForecastResponse(forecast=answer.result.values, meta=meta(answer))


def classify_response(answer: Answer) -> serving_pb2.ClassifyResponse:
    return serving_pb2.ClassifyResponse(classifications=[
        serving_pb2.Classification(label=c.label, probability=c.probability,
                                   scores=[serving_pb2.ClassScore(label=k, probability=v) for k, v in c.scores.items()])
        for c in answer.result], meta=meta(answer))


def segment_response(answer: Answer) -> serving_pb2.SegmentResponse:
    result = answer.result
    return serving_pb2.SegmentResponse(
        change_points=result.change_points,
        segments=[serving_pb2.Segment(start=s.start, end=s.end, mean=s.mean, stddev=s.stddev) for s in result.segments],
        meta=meta(answer))


def analyze_response(answer: Answer) -> serving_pb2.AnalyzeResponse:
    return serving_pb2.AnalyzeResponse(
        analyses=[serving_pb2.Analysis(label=a.label, score=a.score, scores=dict(a.scores)) for a in answer.result],
        meta=meta(answer))


def stats(value: SessionStats) -> serving_pb2.SessionStats:
    return serving_pb2.SessionStats(
        queue_depth=value.queue_depth, running=value.running, requests_total=value.requests_total,
        requests_failed=value.requests_failed, requests_refused=value.requests_refused,
        throughput_rps=value.throughput_rps, latency_p50_ms=value.latency_p50_ms, latency_p99_ms=value.latency_p99_ms,
        batch_size_mean=value.batch_size_mean, batch_size_counts=value.batch_size_counts,
        rule_trips=value.rule_trips,
        breaker_state=BREAKER.get(value.breaker_state, serving_pb2.BREAKER_STATE_UNSPECIFIED),
    )


def session(snapshot: SessionSnapshot, replica: str) -> serving_pb2.ServingSession:
    b = snapshot.batching
    batching = serving_pb2.BatchingConfig(max_batch_size=b.max_batch_size,
                                          max_queue_delay_us=round(b.max_queue_delay_s * 1e6),
                                          max_queue_size=b.max_queue_size)
    if snapshot.interface == "forecaster":  # the only interface it applies to
        batching.iteration_level = b.iteration_level
    message = serving_pb2.ServingSession(
        id=snapshot.id, model=snapshot.model, artifact_id=snapshot.artifact_id,
        interface=INTERFACE_KINDS.get(snapshot.interface, common_pb2.INTERFACE_KIND_UNSPECIFIED),
        state=STATES[snapshot.state],
        executor=EXECUTOR_KINDS.get(snapshot.executor, serving_pb2.EXECUTOR_KIND_UNSPECIFIED),
        batching=batching, rule_pack=snapshot.rule_pack, stats=stats(snapshot.stats), halt_reason=snapshot.halt_reason,
        replica=replica, rule_notes=snapshot.rule_notes,
    )
    message.created_at.FromDatetime(snapshot.created_at)
    message.updated_at.FromDatetime(snapshot.updated_at)
    return message


def sessions(snapshots: Iterable[SessionSnapshot], replica: str, state: int = 0) -> serving_pb2.ListSessionsResponse:
    """Every snapshot, or those in the proto `state` (UNSPECIFIED: all)."""
    return serving_pb2.ListSessionsResponse(sessions=[
        session(s, replica) for s in snapshots if not state or STATES[s.state] == state])


def halt_all(results: Iterable[HaltResult], replica: str,
             peers: Iterable[serving_pb2.HaltResult] = ()) -> serving_pb2.HaltAllResponse:
    """This replica's results first, then the other replicas' as they answered (or failed to). A replica with
    no session answers one row without a session id, so every replica reached is named in the answer."""
    items = [serving_pb2.HaltResult(replica=replica, session_id=r.session_id, halted=r.halted, error=r.error)
             for r in results] or [serving_pb2.HaltResult(replica=replica, halted=True)]
    items += peers
    return serving_pb2.HaltAllResponse(results=items, halted=sum(1 for r in items if r.halted and r.session_id))
