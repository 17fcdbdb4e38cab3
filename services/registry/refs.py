"""Names, aliases and references to artifacts: `sha256:<hex>`, `name@alias`, or `name` (= name@latest)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.core.canonical import CONTENT_ID
from services.core.errors import InvalidArgument

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
ALIAS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
LATEST = "latest"


@dataclass(frozen=True)
class ArtifactRef:
    """Either a pinned id or a name with an alias."""

    artifact_id: str | None = None
    name: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return self.artifact_id or f"{self.name}@{self.alias}"


def check_name(name: str, *, field: str = "name") -> str:
    if not NAME.match(name) or "//" in name or name.endswith("/"):
        raise InvalidArgument(
            "must be 1-200 characters of letters, digits, '.', '_', '-', '/' starting with a letter or digit",
            field=field,
        )
    return name


def check_alias(alias: str, *, field: str = "alias") -> str:
    if not ALIAS.match(alias):
        raise InvalidArgument("must be 1-100 characters of a-z, 0-9, '.', '_', '-'", field=field)
    return alias


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
