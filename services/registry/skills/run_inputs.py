"""A run's inputs checked against the skill's declared inputs, before any operation or ledger entry exists.

Each problem is INVALID_ARGUMENT naming `inputs.<name>`: a missing input, one the skill does not declare,
or a value of the wrong type. Values come back in canonical form (numbers as floats, integers as ints:
a protobuf Struct carries every number as a double, so a horizon arrives as 5.0 and leaves as 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.core.errors import InvalidArgument
from services.registry.skills.interfaces import Argument, coerce_literal, describe
from services.registry.skills.invalid import join
from services.registry.skills.spec import MLSkillSpec

_LISTS = frozenset({"features", "series", "texts"})


def check_inputs(spec: MLSkillSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs in canonical form; InvalidArgument naming `inputs.<name>` at the first problem."""
    declared = ", ".join(sorted(spec.inputs)) or "none"
    for name in inputs:
        if name not in spec.inputs:
            raise InvalidArgument(f"unknown input; {spec.name} takes: {declared}", field=join("inputs", name))
    checked: dict[str, Any] = {}
    for name, declared_input in spec.inputs.items():
        field = join("inputs", name)
        kind = declared_input.type
        if name not in inputs:
            raise InvalidArgument(f"is required: {describe(kind)}", field=field)
        try:
            value = coerce_literal(inputs[name], Argument(frozenset({kind})))
        except ValueError as exc:
            raise InvalidArgument(str(exc), field=field) from None
        if kind in _LISTS and not value:
            raise InvalidArgument(f"must not be empty: {describe(kind)}", field=field)
        checked[name] = value
    return checked
