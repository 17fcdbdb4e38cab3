"""Field paths and the translation of pydantic's validation errors into one InvalidArgument.

A caller (an agent, a REST client) sees one message and one path such as `steps[1].model.cases.bull`, so
the path must name the spot in the document exactly, whatever pydantic's internals add to its locations.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from services.core.errors import InvalidArgument
from services.registry.skills.bindings import IDENTIFIER, SKILL_NAME

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PATTERN_HINTS = {
    f"^{SKILL_NAME}$": "must start with a-z and continue with up to 99 of a-z, 0-9, '_', '.', '-'",
    f"^{IDENTIFIER}$": "must start with a-z and continue with up to 63 of a-z, 0-9, '_'",
}
_TYPE_NAMES = {
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
# Pydantic adds these to locations; they name no place in the document.
_KEY_MARK = "[key]"
_UNION_TAGS = {"ref", "select"}


def join(path: str, key: str | int) -> str:
    """`path` extended by a list index or a mapping key; keys that would read ambiguously are quoted."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _PLAIN_KEY.match(key):
        if len(key) > 80:
            key = key[:80] + "..."
        # Escaped when it holds an unpaired surrogate: the path travels as UTF-8 in a gRPC status.
        quoted = json.dumps(key, ensure_ascii=False)
        if any("\ud800" <= c <= "\udfff" for c in key):
            quoted = json.dumps(key)
        return f"{path}[{quoted}]"
    return f"{path}.{key}" if path else key


def field_path(parts: Sequence[str | int]) -> str:
    path = ""
    for part in parts:
        path = join(path, part)
    return path


def document_location(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Pydantic's location with its own markers removed (dict-key marks, the model union's tag)."""
    parts: list[str | int] = []
    for part in loc:
        if part == _KEY_MARK:
            continue
        # A step's `model` is a tagged union of a reference and a select; the tag follows `model` directly.
        if len(parts) == 3 and parts[0] == "steps" and parts[2] == "model" and part in _UNION_TAGS:
            continue
        parts.append(part)
    return tuple(parts)


def _message(error: Any, loc: tuple[str | int, ...], fields_at: Callable[[tuple], Sequence[str]]) -> str:
    kind, value = error["type"], error.get("input")
    last = loc[-1] if loc else ""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        fields = fields_at(loc[:-1])
        close = difflib.get_close_matches(str(last), fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field {_short(last)}{hint}; the fields here are: {', '.join(fields)}"
    if kind == "literal_error":
        noun = {"interface": "interface kind", "type": "input type"}.get(str(last), "value")
        return f"unknown {noun} {_short(value)}; valid: {error['ctx']['expected']}"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(error["ctx"]["pattern"], f"must match {error['ctx']['pattern']}")
        return f"{_short(value)} {hint}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_type_name(value)}"
    return error["msg"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def to_invalid_argument(exc: ValidationError, fields_at: Callable[[tuple], Sequence[str]]) -> InvalidArgument:
    """The first problem pydantic found, as InvalidArgument; how many more there are is in the message."""
    errors = exc.errors(include_url=False)
    # Unknown keys first: a misspelt key (`step:`) usually explains the other problems (`steps` missing).
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = document_location(first["loc"])
    message = _message(first, loc, fields_at)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidArgument(message, field=field_path(loc) or "spec_yaml")
