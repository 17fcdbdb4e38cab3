"""Artifact manifests between protobuf and the domain, in one place for every service.

Numbers in `metadata` cross a protobuf Struct as doubles; the canonical JSON writes integral ones as
integers, so a manifest that crossed the wire still hashes to the id its author computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from mlmesh.v1 import common_pb2
from services.core.artifacts.manifest import Manifest, parse_manifest
from services.core.errors import IntegrityError

DEFAULT_MEDIA_TYPE = "application/octet-stream"


def files_list(files) -> list[dict[str, Any]]:
    return [
        {"path": f.path, "sha256": f.sha256, "size": f.size, "media_type": f.media_type or DEFAULT_MEDIA_TYPE}
        for f in files
    ]


def manifest_dict(message: common_pb2.Manifest) -> dict[str, Any]:
    return {
        "files": files_list(message.files),
        "framework": message.framework,
        "format": message.format,
        "metadata": json_format.MessageToDict(message.metadata),
    }


def manifest_from_message(message: common_pb2.Manifest, *, field: str = "manifest") -> Manifest:
    return parse_manifest(manifest_dict(message), field=field)


def artifact_manifest(artifact: common_pb2.Artifact, *, field: str = "model") -> Manifest:
    """The artifact's manifest, refused unless it hashes to the artifact's id."""
    manifest = manifest_from_message(artifact.manifest, field=field)
    if manifest.artifact_id != artifact.id:
        raise IntegrityError(
            f"artifact id mismatch: the manifest hashes to {manifest.artifact_id}, not {artifact.id}", field=field
        )
    return manifest


def manifest_message(manifest: Manifest | Mapping[str, Any] | common_pb2.Manifest) -> common_pb2.Manifest:
    if isinstance(manifest, common_pb2.Manifest):
        return manifest
    data = manifest.canonical() if isinstance(manifest, Manifest) else dict(manifest)
    message = common_pb2.Manifest(
        files=[common_pb2.ArtifactFile(**f) for f in data.get("files", ())],
        framework=data.get("framework", ""),
        format=data.get("format", ""),
    )
    message.metadata.update(dict(data.get("metadata") or {}))
    return message
