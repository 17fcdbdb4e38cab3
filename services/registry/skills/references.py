"""Model references in a skill: pinned `sha256:<hex>`, or `name@alias`, or a bare `name` (= `name@latest`).

The grammar is the artifact catalog's (services.registry.refs), so whatever a skill may name the registry can
resolve. A bare name is stored as `name@latest`: the canonical form must not depend on whether the author
spelled out the default alias, or the same skill would hash to two versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from services.core.errors import InvalidArgument
from services.registry.refs import parse_artifact_ref

if TYPE_CHECKING:
    from services.registry.skills.spec import MLSkillSpec

_FORMS = "write 'sha256:<64 hex>', 'name@alias' or 'name'"


@dataclass(frozen=True)
class ModelRef:
    kind: Literal["pinned", "alias"]
    sha256: str | None = None  # hex digest, for kind "pinned"
    name: str | None = None  # for kind "alias"
    alias: str | None = None

    def __str__(self) -> str:
        return f"sha256:{self.sha256}" if self.kind == "pinned" else f"{self.name}@{self.alias}"


def _parse(ref: object) -> ModelRef:
    """ValueError with a reader's message when `ref` is malformed (pydantic validators need ValueError)."""
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"a model reference is required; {_FORMS}")
    # The catalog's parser is lenient about these; a skill's references are content, so refuse them.
    if ref != ref.strip() or ref.endswith("@"):
        raise ValueError(f"malformed model reference {ref!r}; {_FORMS}")
    try:
        parsed = parse_artifact_ref(ref, field="model")
    except InvalidArgument as exc:
        raise ValueError(f"malformed model reference {ref!r}: {exc.message}") from None
    if parsed.artifact_id:
        return ModelRef("pinned", sha256=parsed.artifact_id.removeprefix("sha256:"))
    return ModelRef("alias", name=parsed.name, alias=parsed.alias)


def normalize_model_ref(ref: str) -> str:
    """The canonical spelling of `ref`; ValueError when malformed."""
    return str(_parse(ref))


def parse_model_ref(ref: str, *, field: str = "model") -> ModelRef:
    """`ref` parsed; InvalidArgument naming `field` when it is malformed."""
    try:
        return _parse(ref)
    except ValueError as exc:
        raise InvalidArgument(str(exc), field=field) from None


def model_references(spec: MLSkillSpec) -> list[str]:
    """Every model reference the spec may use, deduplicated, in step order.

    Within a `select`, cases come in label order, then the default: the list depends only on the spec's
    content, not on the order an author wrote the cases in.
    """
    found: dict[str, None] = {}
    for step in spec.steps:
        model = step.model
        if isinstance(model, str):
            found.setdefault(model)
            continue
        for label in sorted(model.cases):
            found.setdefault(model.cases[label])
        if model.default is not None:
            found.setdefault(model.default)
    return list(found)
