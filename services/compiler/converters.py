"""Proto <-> domain translation for the compiler; nothing here decides anything."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2

from mlmesh.v1 import common_pb2, compiler_pb2
from services.compiler.build import Compiled
from services.compiler.compilers.base import Compiler
from services.compiler.spec import CompileSpec
from services.compiler.validation import ValidationPolicy
from services.core.artifacts.manifest import Manifest
from services.core.artifacts.messages import artifact_manifest


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if value:
        message.update(dict(value))
    return message


# ---- proto -> domain ----

def compile_spec(request: compiler_pb2.CompileRequest) -> CompileSpec:
    policy = request.validation
    return CompileSpec(
        artifact=request.artifact.strip(), target=request.target, kwargs=json_format.MessageToDict(request.kwargs),
        validation=ValidationPolicy(
            batch_sizes=tuple(policy.batch_sizes), tolerance_abs=policy.tolerance_abs,
            tolerance_rel=policy.tolerance_rel, warn_only=policy.warn_only,
        ),
        max_batch_size=request.max_batch_size,
    )


def manifest(artifact: common_pb2.Artifact) -> Manifest:
    """The artifact's manifest as the loader checks it, refused unless it hashes to the artifact's id."""
    return artifact_manifest(artifact, field="artifact")


# ---- domain -> proto ----

def compiler_info(compiler: Compiler) -> compiler_pb2.CompilerInfo:
    state = compiler.availability()
    return compiler_pb2.CompilerInfo(
        alias=compiler.alias, targets=list(compiler.targets), available=state.available, reason=state.reason,
        output_format=compiler.output_format, tool_versions=compiler.tool_versions(),
        parameters=[
            compiler_pb2.CompilerParameter(
                name=p.name, type=p.type, default_json=json.dumps(p.default),
                description=p.description + (f" Choices: {list(p.choices)}." if p.choices else "")
                + (f" Targets: {list(p.targets)}." if p.targets else ""),
            )
            for p in compiler.all_parameters()
        ],
    )


def compiled_message(source_artifact_id: str, compiler: str, target: str, compiled: Compiled,
                     kwargs: Mapping[str, Any], metrics: Mapping[str, Any],
                     signature: common_pb2.Signature | None = None) -> common_pb2.CompiledArtifact:
    """The record to register; its id is left to the registry (the content id of files + parameters).
    `signature`: the signer's bundle over the record's files (the registry refuses a record without one)."""
    validation = common_pb2.ValidationMetrics()
    json_format.ParseDict(dict(metrics), validation)
    tool_versions = {k: str(v) for k, v in compiled.output.tool_versions.items()}
    return common_pb2.CompiledArtifact(
        source_artifact_id=source_artifact_id, compiler=compiler, target=target,
        files=[common_pb2.ArtifactFile(**f.as_dict()) for f in compiled.files], sha256=compiled.primary.sha256,
        size=sum(f.size for f in compiled.files), kwargs=struct(kwargs), tool_versions=tool_versions,
        validation=validation, triton_platform=compiled.output.triton_platform, signature=signature,
    )
