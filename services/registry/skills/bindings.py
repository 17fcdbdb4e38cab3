"""Data references inside a skill: `$inputs.NAME` (a skill input) and `$steps.ID.FIELD` (an earlier step's output).

Any string value that starts with `$` is a reference and must parse as one; everything else is a literal.
The wiring between steps is read from these references, so they are the only source of dependencies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IDENTIFIER = r"[a-z][a-z0-9_]{0,63}"  # step ids, input, output and field names
SKILL_NAME = r"[a-z][a-z0-9_.-]{0,99}"
_INPUT_REF = re.compile(rf"^\$inputs\.({IDENTIFIER})$")
_STEP_REF = re.compile(rf"^\$steps\.({IDENTIFIER})\.({IDENTIFIER})$")


@dataclass(frozen=True)
class InputRef:
    name: str

    def __str__(self) -> str:
        return f"$inputs.{self.name}"


@dataclass(frozen=True)
class StepRef:
    step: str
    field: str

    def __str__(self) -> str:
        return f"$steps.{self.step}.{self.field}"


Binding = InputRef | StepRef


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$")


def parse_binding(text: str) -> Binding:
    """The reference `text` names; ValueError when it is not `$inputs.NAME` or `$steps.ID.FIELD`."""
    if match := _INPUT_REF.match(text):
        return InputRef(match.group(1))
    if match := _STEP_REF.match(text):
        return StepRef(match.group(1), match.group(2))
    raise ValueError(f"malformed reference {text!r}; write $inputs.NAME or $steps.STEP_ID.FIELD")


def try_binding(value: Any) -> Binding | None:
    """The reference in `value`, or None for a literal or a malformed reference (checked elsewhere)."""
    if not is_reference(value):
        return None
    try:
        return parse_binding(value)
    except ValueError:
        return None
