"""The canonical form of a skill spec and its version id.

The canonical form is the validated spec dumped with every default materialised and every normalisation
applied (bare model names as `name@latest`, literal numbers as floats, descriptions stripped), then written
as canonical JSON. So key order, YAML style, comments, JSON vs YAML, and spelled-out defaults never change
a version; any change of content does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.core import canonical as core

if TYPE_CHECKING:
    from services.registry.skills.spec import MLSkillSpec


def canonical_data(spec: MLSkillSpec) -> dict[str, Any]:
    """The spec as JSON-shaped data, defaults included (what the registry stores and serves)."""
    return spec.model_dump(mode="json", exclude_none=False)


def canonical_json(spec: MLSkillSpec) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 kept as is (services.core.canonical's rules)."""
    return core.canonical_json(canonical_data(spec))


def version_id(spec: MLSkillSpec) -> str:
    """Hex SHA-256 of the UTF-8 canonical JSON: the skill version."""
    return core.sha256_hex(canonical_json(spec).encode("utf-8"))
