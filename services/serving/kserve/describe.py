"""Sessions described in KServe v2 / Triton terms: model metadata, model config, statistics and the
repository index. A session is a model named by its id, with the one version "1"."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2, service_pb2

from services.serving.kserve.signatures import Signature, TensorDef
from services.serving.sessions.session import Session
from services.serving.sessions.snapshot import SessionState

VERSION = "1"
SERVER_NAME = "mlmesh-serving"
EXTENSIONS = ("model_repository", "model_configuration", "statistics")
# Triton's repository states: a halted session is UNAVAILABLE (with the halt reason), as Triton reports
# an unloaded model.
INDEX_STATES = {SessionState.DEPLOYING: "LOADING", SessionState.READY: "READY",
                SessionState.HALTED: "UNAVAILABLE", SessionState.UNDEPLOYED: "UNAVAILABLE"}


def platform(session: Session) -> str:
    return f"mlmesh_{session.interface}"


def _tensor_metadata(tensor: TensorDef) -> service_pb2.ModelMetadataResponse.TensorMetadata:
    return service_pb2.ModelMetadataResponse.TensorMetadata(name=tensor.name, datatype=tensor.datatype,
                                                            shape=tensor.shape)


def model_metadata(session: Session, signature: Signature) -> service_pb2.ModelMetadataResponse:
    return service_pb2.ModelMetadataResponse(
        name=session.id, versions=[VERSION], platform=platform(session),
        inputs=[_tensor_metadata(t) for t in signature.inputs],
        outputs=[_tensor_metadata(t) for t in signature.outputs],
    )


def _data_type(datatype: str) -> int:
    return model_config_pb2.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")


def model_config(session: Session, signature: Signature) -> service_pb2.ModelConfigResponse:
    """The batch dimension is implicit (max_batch_size > 0), as in Triton configs: dims are per row."""
    batching = session.batching
    config = model_config_pb2.ModelConfig(
        name=session.id, platform=platform(session), backend="mlmesh", max_batch_size=batching.max_batch_size,
        input=[model_config_pb2.ModelInput(name=t.name, data_type=_data_type(t.datatype), dims=t.shape[1:])
               for t in signature.inputs],
        output=[model_config_pb2.ModelOutput(name=t.name, data_type=_data_type(t.datatype), dims=t.shape[1:])
                for t in signature.outputs],
        dynamic_batching=model_config_pb2.ModelDynamicBatching(
            max_queue_delay_microseconds=round(batching.max_queue_delay_s * 1e6),
            default_queue_policy=model_config_pb2.ModelQueuePolicy(max_queue_size=batching.max_queue_size),
        ),
    )
    config.parameters["mlmesh_executor"].string_value = session.executor_kind
    config.parameters["mlmesh_artifact_id"].string_value = session.backend.artifact_id
    config.parameters["mlmesh_rule_pack"].string_value = session.rules.pack
    if session.rules.notes:  # e.g. an OODGuard without statistics: what the rules cannot check
        config.parameters["mlmesh_rule_notes"].string_value = "; ".join(session.rules.notes)
    return service_pb2.ModelConfigResponse(config=config)


def _duration(count: int, seconds: float = 0.0) -> service_pb2.StatisticDuration:
    return service_pb2.StatisticDuration(count=count, ns=int(seconds * 1e9))


def model_statistics(session: Session) -> service_pb2.ModelStatistics:
    """Counts and summed durations of the session: successes with their queue and compute time, failures
    (queued then failed, or refused), and how many batches of each size ran (compute time is per batch
    in the engine, so batch statistics carry counts only)."""
    totals, stats = session.totals, session.loop.stats
    counts = dict(stats.batch_size_counts)
    return service_pb2.ModelStatistics(
        name=session.id, version=VERSION, last_inference=totals.last_ms, inference_count=totals.success,
        execution_count=sum(counts.values()),
        inference_stats=service_pb2.InferStatistics(
            success=_duration(totals.success, totals.queue_s + totals.compute_s),
            fail=_duration(stats.requests_failed + stats.requests_refused),
            queue=_duration(totals.success, totals.queue_s),
            compute_infer=_duration(totals.success, totals.compute_s),
        ),
        batch_stats=[service_pb2.InferBatchStatistics(batch_size=size, compute_infer=_duration(count))
                     for size, count in sorted(counts.items())],
    )


def index_entry(session: Session) -> service_pb2.RepositoryIndexResponse.ModelIndex:
    reason = f"halted: {session.halt_reason}" if session.state is SessionState.HALTED else ""
    return service_pb2.RepositoryIndexResponse.ModelIndex(
        name=session.id, version=VERSION, state=INDEX_STATES[session.state], reason=reason)
