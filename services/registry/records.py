"""What the registry's domain objects hand back: plain frozen records, converted to protos at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.core.artifacts.manifest import Manifest, ManifestFile


@dataclass(frozen=True)
class SignatureData:
    media_type: str
    bundle: bytes
    key_id: str = ""


@dataclass(frozen=True)
class ArtifactRecord:
    id: str
    manifest: Manifest
    name: str | None
    aliases: tuple[str, ...]          # "name@alias" for every alias that points here
    labels: dict[str, str]
    source_uri: str
    signature: SignatureData | None
    created_by: str
    created_at: datetime

    @property
    def total_size(self) -> int:
        return self.manifest.total_size


@dataclass(frozen=True)
class CompiledRecord:
    id: str
    source_artifact_id: str
    compiler: str
    target: str
    files: tuple[ManifestFile, ...]
    sha256: str
    size: int
    kwargs: dict[str, Any]
    tool_versions: dict[str, str]
    validation: dict[str, Any]
    triton_platform: str
    signature: SignatureData | None   # the compiler's bundle over exactly `files` (None: an older record)
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class SkillVersionRecord:
    name: str
    version: str
    number: int
    spec: dict[str, Any]
    spec_yaml: str
    lock: dict[str, str]
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class SkillRecord:
    name: str
    description: str
    latest_version: str
    version_count: int
    updated_at: datetime


@dataclass(frozen=True)
class ExperimentRecord:
    id: str
    name: str
    description: str
    labels: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class MLTestRecord:
    __test__ = False  # not a pytest class
    id: str
    experiment_id: str
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class SkillRunRecord:
    id: str
    skill_name: str
    skill_version: str
    status: str                        # RUNNING, SUCCEEDED, FAILED, CANCELLED
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    steps: list[dict[str, Any]]
    resolved: dict[str, str]
    reresolved_aliases: bool
    experiment_id: str | None
    test_id: str | None
    error: str
    failed_step: str
    created_by: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float


@dataclass(frozen=True)
class Page:
    items: list = field(default_factory=list)
    next_token: str = ""
