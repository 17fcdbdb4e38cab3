"""Proto <-> domain translation for the registry; nothing here decides anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from mlmesh.v1 import common_pb2, registry_pb2
from services.core.artifacts.messages import files_list
from services.core.lineage import LineageEvent
from services.registry import records
from services.registry.lineage_store import BOTH, DOWNSTREAM, UPSTREAM, LineageGraphData

DIRECTIONS = {
    registry_pb2.LINEAGE_DIRECTION_UNSPECIFIED: BOTH,
    registry_pb2.LINEAGE_DIRECTION_BOTH: BOTH,
    registry_pb2.LINEAGE_DIRECTION_UPSTREAM: UPSTREAM,
    registry_pb2.LINEAGE_DIRECTION_DOWNSTREAM: DOWNSTREAM,
}
RUN_STATUS = {
    "RUNNING": registry_pb2.SKILL_RUN_STATUS_RUNNING,
    "SUCCEEDED": registry_pb2.SKILL_RUN_STATUS_SUCCEEDED,
    "FAILED": registry_pb2.SKILL_RUN_STATUS_FAILED,
    "CANCELLED": registry_pb2.SKILL_RUN_STATUS_CANCELLED,
}
RUN_STATUS_NAMES = {value: key for key, value in RUN_STATUS.items()}


# ---- helpers ----

def struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if value:
        message.update(value)
    return message


def struct_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def message_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# ---- proto -> domain ----

def signature_data(signature: common_pb2.Signature) -> records.SignatureData | None:
    if not signature.bundle:
        return None
    return records.SignatureData(signature.media_type, signature.bundle, signature.key_id)


def compiled_dict(compiled: common_pb2.CompiledArtifact) -> dict[str, Any]:
    """The record's fields; its signature travels separately (`signature_data`)."""
    data = message_dict(compiled)
    data.pop("signature", None)
    data["files"] = files_list(compiled.files)
    data["kwargs"] = struct_dict(compiled.kwargs)
    data["validation"] = message_dict(compiled.validation) if compiled.HasField("validation") else {}
    return data


def lineage_event(event: registry_pb2.LineageEvent, *, actor: str) -> LineageEvent:
    extra = {"id": event.id} if event.id else {}
    if event.HasField("time"):
        extra["time"] = event.time.ToDatetime(tzinfo=UTC)
    return LineageEvent(
        operation=event.operation, actor=event.actor or actor, inputs=tuple(event.inputs),
        outputs=tuple(event.outputs), parameters=struct_dict(event.parameters), service=event.service,
        operation_id=event.operation_id, **extra,
    )


# ---- domain -> proto ----

def _files(files) -> list[common_pb2.ArtifactFile]:
    return [common_pb2.ArtifactFile(path=f.path, sha256=f.sha256, size=f.size, media_type=f.media_type) for f in files]


def _signature(record: records.SignatureData) -> common_pb2.Signature:
    return common_pb2.Signature(media_type=record.media_type, bundle=record.bundle, key_id=record.key_id)


def artifact(record: records.ArtifactRecord) -> common_pb2.Artifact:
    manifest = record.manifest
    message = common_pb2.Artifact(
        id=record.id,
        manifest=common_pb2.Manifest(
            files=_files(manifest.files), framework=manifest.framework, format=manifest.format,
            metadata=struct(manifest.metadata),
        ),
        name=record.name or "", aliases=list(record.aliases), total_size=record.total_size,
        labels=record.labels, source_uri=record.source_uri, created_by=record.created_by,
        created_at=timestamp(record.created_at),
    )
    if record.signature:
        message.signature.CopyFrom(_signature(record.signature))
    return message


def compiled(record: records.CompiledRecord) -> common_pb2.CompiledArtifact:
    validation = common_pb2.ValidationMetrics()
    json_format.ParseDict(record.validation, validation, ignore_unknown_fields=True)
    return common_pb2.CompiledArtifact(
        id=record.id, source_artifact_id=record.source_artifact_id, compiler=record.compiler,
        target=record.target, files=_files(record.files), sha256=record.sha256, size=record.size,
        kwargs=struct(record.kwargs), tool_versions=record.tool_versions, validation=validation,
        triton_platform=record.triton_platform, created_by=record.created_by,
        created_at=timestamp(record.created_at),
        signature=_signature(record.signature) if record.signature else None,
    )


def event(record: LineageEvent) -> registry_pb2.LineageEvent:
    return registry_pb2.LineageEvent(
        id=record.id, operation=record.operation, actor=record.actor, inputs=list(record.inputs),
        outputs=list(record.outputs), parameters=struct(dict(record.parameters)), time=timestamp(record.time),
        operation_id=record.operation_id, service=record.service,
    )


def graph(data: LineageGraphData) -> registry_pb2.LineageGraph:
    return registry_pb2.LineageGraph(
        root=data.root,
        nodes=[registry_pb2.LineageNode(entity=e, kind=k) for e, k in sorted(data.nodes.items())],
        edges=[
            registry_pb2.LineageEdge(source=s, target=t, event_id=i, operation=o) for s, t, i, o in sorted(data.edges)
        ],
        events=[event(e) for e in sorted(data.events.values(), key=lambda e: (e.time, e.id))],
    )


def skill_version(record: records.SkillVersionRecord) -> registry_pb2.SkillVersion:
    return registry_pb2.SkillVersion(
        name=record.name, version=record.version, spec=struct(record.spec), spec_yaml=record.spec_yaml,
        lock=record.lock, created_by=record.created_by, created_at=timestamp(record.created_at),
        number=record.number,
    )


def skill(record: records.SkillRecord) -> registry_pb2.Skill:
    return registry_pb2.Skill(
        name=record.name, description=record.description, latest_version=record.latest_version,
        version_count=record.version_count, updated_at=timestamp(record.updated_at),
    )


def experiment(record: records.ExperimentRecord) -> registry_pb2.Experiment:
    return registry_pb2.Experiment(
        id=record.id, name=record.name, description=record.description, labels=record.labels,
        created_at=timestamp(record.created_at),
    )


def ml_test(record: records.MLTestRecord) -> registry_pb2.Test:
    return registry_pb2.Test(
        id=record.id, experiment_id=record.experiment_id, name=record.name, description=record.description,
        created_at=timestamp(record.created_at),
    )


def skill_run(record: records.SkillRunRecord) -> registry_pb2.SkillRun:
    steps = []
    for step in record.steps:
        message = registry_pb2.SkillStepResult()
        json_format.ParseDict(step, message, ignore_unknown_fields=True)
        steps.append(message)
    return registry_pb2.SkillRun(
        id=record.id, skill_name=record.skill_name, skill_version=record.skill_version,
        status=RUN_STATUS[record.status], inputs=struct(record.inputs), outputs=struct(record.outputs),
        steps=steps, resolved=record.resolved, reresolved_aliases=record.reresolved_aliases,
        experiment_id=record.experiment_id or "", test_id=record.test_id or "", error=record.error,
        failed_step=record.failed_step, created_by=record.created_by, started_at=timestamp(record.started_at),
        finished_at=timestamp(record.finished_at), duration_ms=record.duration_ms,
    )
