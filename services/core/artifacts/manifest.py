"""The artifact manifest: the files an artifact is made of. Its canonical JSON hashes to the artifact id."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.core.canonical import SHA256_HEX, canonical_json, content_id, find_non_finite
from services.core.errors import InvalidArgument

MAX_FILES = 10_000


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=1024)
    sha256: str
    size: int = Field(ge=0)
    media_type: str = Field("application/octet-stream", max_length=200)

    @field_validator("path")
    @classmethod
    def _safe_relative_path(cls, value: str) -> str:
        path = PurePosixPath(value)
        if value.startswith("/") or "\\" in value or any(part in ("..", ".", "") for part in value.split("/")):
            raise ValueError("must be a relative path with forward slashes and no '.', '..' or empty parts")
        return str(path)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not SHA256_HEX.match(value):
            raise ValueError("must be 64 lowercase hex digits")
        return value


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    files: tuple[ManifestFile, ...] = Field(min_length=1, max_length=MAX_FILES)
    framework: str = Field("", max_length=64)
    format: str = Field("", max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sorted_unique_paths(self) -> "Manifest":
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            dup = next(p for p in paths if paths.count(p) > 1)
            raise ValueError(f"duplicate file path {dup!r}")
        # Files are kept sorted so the order a client listed them in never changes the id.
        object.__setattr__(self, "files", tuple(sorted(self.files, key=lambda f: f.path)))
        bad = find_non_finite(self.metadata, "metadata")
        if bad:
            raise ValueError(f"{bad} is not a finite number; canonical JSON cannot carry it")
        return self

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical_json(self) -> str:
        return canonical_json(self.canonical())

    @property
    def artifact_id(self) -> str:
        return content_id(self.canonical())

    def file(self, path: str) -> ManifestFile | None:
        return next((f for f in self.files if f.path == path), None)


def parse_manifest(data: dict[str, Any], *, field: str = "manifest") -> Manifest:
    """A validated Manifest, or InvalidArgument naming the first field at fault (e.g. manifest.files[2].sha256)."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgument(_first_problem(exc), field=_field_path(field, exc)) from None


def _field_path(prefix: str, exc: ValidationError) -> str:
    path = prefix
    for part in exc.errors()[0]["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _first_problem(exc: ValidationError) -> str:
    message = exc.errors()[0]["msg"]
    return message.removeprefix("Value error, ")


def compiled_content_id(
    source_artifact_id: str, compiler: str, target: str, files: list[dict[str, Any]], kwargs: dict[str, Any]
) -> str:
    """Content id of a compiled output: its files and what it was made from, with which parameters."""
    files = sorted(files, key=lambda f: f["path"])
    return content_id(
        {"source_artifact_id": source_artifact_id, "compiler": compiler, "target": target, "files": files,
         "kwargs": kwargs}
    )
