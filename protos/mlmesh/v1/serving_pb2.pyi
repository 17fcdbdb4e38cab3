import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mlmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTOR_KIND_UNSPECIFIED: _ClassVar[ExecutorKind]
    EXECUTOR_KIND_TRITON: _ClassVar[ExecutorKind]
    EXECUTOR_KIND_IN_PROCESS: _ClassVar[ExecutorKind]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_DEPLOYING: _ClassVar[SessionState]
    SESSION_STATE_READY: _ClassVar[SessionState]
    SESSION_STATE_HALTED: _ClassVar[SessionState]
    SESSION_STATE_UNDEPLOYED: _ClassVar[SessionState]
    SESSION_STATE_FAILED: _ClassVar[SessionState]

class BreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_STATE_UNSPECIFIED: _ClassVar[BreakerState]
    BREAKER_STATE_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_HALF_OPEN: _ClassVar[BreakerState]
EXECUTOR_KIND_UNSPECIFIED: ExecutorKind
EXECUTOR_KIND_TRITON: ExecutorKind
EXECUTOR_KIND_IN_PROCESS: ExecutorKind
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_DEPLOYING: SessionState
SESSION_STATE_READY: SessionState
SESSION_STATE_HALTED: SessionState
SESSION_STATE_UNDEPLOYED: SessionState
SESSION_STATE_FAILED: SessionState
BREAKER_STATE_UNSPECIFIED: BreakerState
BREAKER_STATE_CLOSED: BreakerState
BREAKER_STATE_OPEN: BreakerState
BREAKER_STATE_HALF_OPEN: BreakerState

class BatchingConfig(_message.Message):
    __slots__ = ("max_batch_size", "max_queue_delay_us", "max_queue_size", "iteration_level")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_US_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITERATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    iteration_level: bool
    def __init__(self, max_batch_size: _Optional[int] = ..., max_queue_delay_us: _Optional[int] = ..., max_queue_size: _Optional[int] = ..., iteration_level: _Optional[bool] = ...) -> None: ...

class SessionStats(_message.Message):
    __slots__ = ("queue_depth", "running", "requests_total", "requests_failed", "requests_refused", "throughput_rps", "latency_p50_ms", "latency_p99_ms", "batch_size_mean", "batch_size_counts", "rule_trips", "breaker_state")
    class BatchSizeCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class RuleTripsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_RPS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_MEAN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    RULE_TRIPS_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    queue_depth: int
    running: int
    requests_total: int
    requests_failed: int
    requests_refused: int
    throughput_rps: float
    latency_p50_ms: float
    latency_p99_ms: float
    batch_size_mean: float
    batch_size_counts: _containers.ScalarMap[int, int]
    rule_trips: _containers.ScalarMap[str, int]
    breaker_state: BreakerState
    def __init__(self, queue_depth: _Optional[int] = ..., running: _Optional[int] = ..., requests_total: _Optional[int] = ..., requests_failed: _Optional[int] = ..., requests_refused: _Optional[int] = ..., throughput_rps: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., batch_size_mean: _Optional[float] = ..., batch_size_counts: _Optional[_Mapping[int, int]] = ..., rule_trips: _Optional[_Mapping[str, int]] = ..., breaker_state: _Optional[_Union[BreakerState, str]] = ...) -> None: ...

class ServingSession(_message.Message):
    __slots__ = ("id", "model", "artifact_id", "interface", "state", "executor", "batching", "rule_pack", "stats", "halt_reason", "replica", "created_at", "updated_at", "rule_notes")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    RULE_PACK_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    HALT_REASON_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RULE_NOTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    artifact_id: str
    interface: _common_pb2.InterfaceKind
    state: SessionState
    executor: ExecutorKind
    batching: BatchingConfig
    rule_pack: str
    stats: SessionStats
    halt_reason: str
    replica: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    rule_notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., artifact_id: _Optional[str] = ..., interface: _Optional[_Union[_common_pb2.InterfaceKind, str]] = ..., state: _Optional[_Union[SessionState, str]] = ..., executor: _Optional[_Union[ExecutorKind, str]] = ..., batching: _Optional[_Union[BatchingConfig, _Mapping]] = ..., rule_pack: _Optional[str] = ..., stats: _Optional[_Union[SessionStats, _Mapping]] = ..., halt_reason: _Optional[str] = ..., replica: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule_notes: _Optional[_Iterable[str]] = ...) -> None: ...

class DeployRequest(_message.Message):
    __slots__ = ("model", "interface", "batching", "rule_pack", "executor", "session_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    RULE_PACK_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    interface: _common_pb2.InterfaceKind
    batching: BatchingConfig
    rule_pack: str
    executor: ExecutorKind
    session_id: str
    def __init__(self, model: _Optional[str] = ..., interface: _Optional[_Union[_common_pb2.InterfaceKind, str]] = ..., batching: _Optional[_Union[BatchingConfig, _Mapping]] = ..., rule_pack: _Optional[str] = ..., executor: _Optional[_Union[ExecutorKind, str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    def __init__(self, state: _Optional[_Union[SessionState, str]] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[ServingSession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[ServingSession, _Mapping]]] = ...) -> None: ...

class WatchSessionsRequest(_message.Message):
    __slots__ = ("interval_s",)
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    def __init__(self, interval_s: _Optional[float] = ...) -> None: ...

class HaltSessionRequest(_message.Message):
    __slots__ = ("session_id", "reason", "cancel_running")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCEL_RUNNING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    cancel_running: bool
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ..., cancel_running: _Optional[bool] = ...) -> None: ...

class ResumeSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class UndeploySessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class HaltAllRequest(_message.Message):
    __slots__ = ("reason", "this_replica_only", "cancel_running")
    REASON_FIELD_NUMBER: _ClassVar[int]
    THIS_REPLICA_ONLY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_RUNNING_FIELD_NUMBER: _ClassVar[int]
    reason: str
    this_replica_only: bool
    cancel_running: bool
    def __init__(self, reason: _Optional[str] = ..., this_replica_only: _Optional[bool] = ..., cancel_running: _Optional[bool] = ...) -> None: ...

class HaltResult(_message.Message):
    __slots__ = ("replica", "session_id", "halted", "error")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    replica: str
    session_id: str
    halted: bool
    error: str
    def __init__(self, replica: _Optional[str] = ..., session_id: _Optional[str] = ..., halted: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class HaltAllResponse(_message.Message):
    __slots__ = ("results", "halted")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[HaltResult]
    halted: int
    def __init__(self, results: _Optional[_Iterable[_Union[HaltResult, _Mapping]]] = ..., halted: _Optional[int] = ...) -> None: ...

class RequestOptions(_message.Message):
    __slots__ = ("priority", "request_id")
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    priority: int
    request_id: str
    def __init__(self, priority: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ResponseMeta(_message.Message):
    __slots__ = ("session_id", "artifact_id", "batch_size", "queue_ms", "compute_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    artifact_id: str
    batch_size: int
    queue_ms: float
    compute_ms: float
    def __init__(self, session_id: _Optional[str] = ..., artifact_id: _Optional[str] = ..., batch_size: _Optional[int] = ..., queue_ms: _Optional[float] = ..., compute_ms: _Optional[float] = ...) -> None: ...

class FeatureRow(_message.Message):
    __slots__ = ("values", "named")
    class NamedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    NAMED_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    named: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Iterable[float]] = ..., named: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("session_id", "rows", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    options: RequestOptions
    def __init__(self, session_id: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "meta")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    meta: ResponseMeta
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., meta: _Optional[_Union[ResponseMeta, _Mapping]] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("session_id", "history", "horizon", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    history: _containers.RepeatedScalarFieldContainer[float]
    horizon: int
    options: RequestOptions
    def __init__(self, session_id: _Optional[str] = ..., history: _Optional[_Iterable[float]] = ..., horizon: _Optional[int] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("forecast", "meta")
    FORECAST_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    forecast: _containers.RepeatedScalarFieldContainer[float]
    meta: ResponseMeta
    def __init__(self, forecast: _Optional[_Iterable[float]] = ..., meta: _Optional[_Union[ResponseMeta, _Mapping]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("session_id", "rows", "texts", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    texts: _containers.RepeatedScalarFieldContainer[str]
    options: RequestOptions
    def __init__(self, session_id: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ..., texts: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("label", "probability", "scores")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    scores: _containers.RepeatedCompositeFieldContainer[ClassScore]
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ..., scores: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("classifications", "meta")
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    classifications: _containers.RepeatedCompositeFieldContainer[Classification]
    meta: ResponseMeta
    def __init__(self, classifications: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ..., meta: _Optional[_Union[ResponseMeta, _Mapping]] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("session_id", "series", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    series: _containers.RepeatedScalarFieldContainer[float]
    options: RequestOptions
    def __init__(self, session_id: _Optional[str] = ..., series: _Optional[_Iterable[float]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("start", "end", "mean", "stddev")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    mean: float
    stddev: float
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., mean: _Optional[float] = ..., stddev: _Optional[float] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("change_points", "segments", "meta")
    CHANGE_POINTS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    change_points: _containers.RepeatedScalarFieldContainer[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    meta: ResponseMeta
    def __init__(self, change_points: _Optional[_Iterable[int]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., meta: _Optional[_Union[ResponseMeta, _Mapping]] = ...) -> None: ...

class AnalyzeRequest(_message.Message):
    __slots__ = ("session_id", "texts", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    options: RequestOptions
    def __init__(self, session_id: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class Analysis(_message.Message):
    __slots__ = ("label", "score", "scores")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    scores: _containers.ScalarMap[str, float]
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("analyses", "meta")
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    analyses: _containers.RepeatedCompositeFieldContainer[Analysis]
    meta: ResponseMeta
    def __init__(self, analyses: _Optional[_Iterable[_Union[Analysis, _Mapping]]] = ..., meta: _Optional[_Union[ResponseMeta, _Mapping]] = ...) -> None: ...
