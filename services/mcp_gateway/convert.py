"""Protobuf messages -> the plain JSON the tools' output schemas describe.

Written out field by field rather than with json_format, whose JSON mapping turns int64 into strings
and drops defaults, neither of which an output schema of integers and required fields allows.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from mlmesh.v1 import common_pb2, operations_pb2, serving_pb2


def when(message: Any, name: str) -> str:
    """An RFC 3339 time, or "" when the field is unset."""
    if not message.HasField(name):
        return ""
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    return stamp.ToJsonString()


def struct(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def enum_name(enum: Any, value: int, prefix: str) -> str:
    """`SESSION_STATE_READY` -> "ready"."""
    try:
        return enum.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def artifact(a: common_pb2.Artifact) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "aliases": list(a.aliases), "framework": a.manifest.framework,
            "format": a.manifest.format, "files": len(a.manifest.files), "total_size": int(a.total_size),
            "labels": dict(a.labels), "source_uri": a.source_uri, "signed": bool(a.signature.bundle),
            "created_by": a.created_by, "created_at": when(a, "created_at")}


def compiled(c: common_pb2.CompiledArtifact) -> dict[str, Any]:
    v = c.validation
    return {"id": c.id, "source_artifact_id": c.source_artifact_id, "compiler": c.compiler, "target": c.target,
            "sha256": c.sha256, "size": int(c.size), "triton_platform": c.triton_platform,
            "signed": bool(c.signature.bundle), "tool_versions": dict(c.tool_versions),
            "validation": {"passed": v.passed, "warned": v.warned, "batch_sizes": list(v.batch_sizes),
                           "max_abs_error": v.max_abs_error, "max_rel_error": v.max_rel_error,
                           "accuracy_delta": v.accuracy_delta, "size_ratio": v.size_ratio},
            "created_at": when(c, "created_at")}


def meta(m: serving_pb2.ResponseMeta) -> dict[str, Any]:
    return {"session_id": m.session_id, "artifact_id": m.artifact_id, "batch_size": m.batch_size,
            "queue_ms": m.queue_ms, "compute_ms": m.compute_ms}


def session(s: serving_pb2.ServingSession) -> dict[str, Any]:
    st, b = s.stats, s.batching
    return {
        "id": s.id, "model": s.model, "artifact_id": s.artifact_id,
        "interface": enum_name(common_pb2.InterfaceKind, s.interface, "INTERFACE_KIND_"),
        "state": enum_name(serving_pb2.SessionState, s.state, "SESSION_STATE_"),
        "executor": enum_name(serving_pb2.ExecutorKind, s.executor, "EXECUTOR_KIND_"),
        "max_batch_size": b.max_batch_size, "max_queue_delay_us": b.max_queue_delay_us,
        "max_queue_size": b.max_queue_size, "rule_pack": s.rule_pack, "halt_reason": s.halt_reason,
        "replica": s.replica,
        "stats": {"queue_depth": st.queue_depth, "running": st.running, "requests_total": int(st.requests_total),
                  "requests_failed": int(st.requests_failed), "requests_refused": int(st.requests_refused),
                  "throughput_rps": st.throughput_rps, "latency_p50_ms": st.latency_p50_ms,
                  "latency_p99_ms": st.latency_p99_ms, "batch_size_mean": st.batch_size_mean,
                  "breaker_state": enum_name(serving_pb2.BreakerState, st.breaker_state, "BREAKER_STATE_")},
        "created_at": when(s, "created_at"), "updated_at": when(s, "updated_at"),
    }


def operation(op: operations_pb2.Operation) -> dict[str, Any]:
    p = op.progress
    result = None
    if op.HasField("result"):
        # The result's type is one of the mesh's messages (Artifact, CompiledArtifact, SkillRun): imported here.
        result = json_format.MessageToDict(op.result, preserving_proto_field_name=True)
    error = None
    if op.HasField("error"):
        error = {"code": op.error.code, "message": op.error.message, "field": op.error.field}
    return {
        "id": op.id, "kind": op.kind, "service": op.service,
        "state": enum_name(operations_pb2.OperationState, op.state, "OPERATION_STATE_"),
        "progress": {"done": int(p.done), "total": int(p.total), "unit": p.unit, "stage": p.stage,
                     "message": p.message},
        "result": result, "error": error, "cancel_requested": op.cancel_requested, "created_by": op.created_by,
        "created_at": when(op, "created_at"), "updated_at": when(op, "updated_at"),
        "finished_at": when(op, "finished_at"),
    }
