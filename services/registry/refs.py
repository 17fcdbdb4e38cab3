"""Names, aliases and references to artifacts: `sha256:<hex>`, `name@alias`, or `name` (= name@latest)."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.canonical import CONTENT_ID
from services.core.errors import InvalidArgument
from services.core.naming import LATEST, check_alias, check_name

__all__ = ["LATEST", "ArtifactRef", "check_alias", "check_name", "parse_artifact_ref"]


@dataclass(frozen=True)
class ArtifactRef:
    """Either a pinned id or a name with an alias."""

    artifact_id: str | None = None
    name: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return self.artifact_id or f"{self.name}@{self.alias}"


def parse_artifact_ref(ref: str, *, field: str = "ref") -> ArtifactRef:
    ref = ref.strip()
    if not ref:
        raise InvalidArgument("is required: 'sha256:<hex>', 'name@alias' or 'name'", field=field)
    if ref.startswith("sha256:"):
        if not CONTENT_ID.match(ref):
            raise InvalidArgument("a pinned reference is 'sha256:' and 64 lowercase hex digits", field=field)
        return ArtifactRef(artifact_id=ref)
    name, _, alias = ref.partition("@")
    return ArtifactRef(name=check_name(name, field=field), alias=check_alias(alias or LATEST, field=field))
