"""The five agent-facing interfaces as a skill sees them: argument names and types, output fields and types.

A skill is checked against this table when it is published, so a wiring mistake (an unknown argument, a
classifier label fed where numbers are expected) is refused then rather than failing a run later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

InterfaceKind = Literal["predictor", "forecaster", "classifier", "segmenter", "analyzer"]
INTERFACE_KINDS: tuple[str, ...] = get_args(InterfaceKind)

# What a skill's caller may pass in. `integer` exists for horizons: a float horizon is a mistake.
InputType = Literal["features", "series", "texts", "number", "integer", "string"]
INPUT_TYPES: tuple[str, ...] = get_args(InputType)

# Value types also cover what steps produce: label scores, change-point indices, segment records.
_DESCRIBE = {
    "features": "a list of numbers (features)",
    "series": "a list of numbers (series)",
    "texts": "a list of strings (texts)",
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "scores": "a mapping of label to score",
    "indices": "a list of indices",
    "segments": "a list of segments",
}
INT32_MAX = 2**31 - 1

# Features and series are both lists of numbers; either may feed an argument that wants numbers.
_NUMBERS = frozenset({"features", "series"})


@dataclass(frozen=True)
class Argument:
    accepts: frozenset[str]
    minimum: int | None = None  # for integer arguments only


@dataclass(frozen=True)
class InterfaceShape:
    arguments: Mapping[str, Argument]  # all required: every interface call needs each of them
    outputs: Mapping[str, str]  # field -> value type


INTERFACES: Mapping[str, InterfaceShape] = {
    "predictor": InterfaceShape(
        {"features": Argument(_NUMBERS)},
        {"value": "number", "values": "features"},
    ),
    "forecaster": InterfaceShape(
        {"history": Argument(_NUMBERS), "horizon": Argument(frozenset({"integer"}), minimum=1)},
        {"forecast": "series"},
    ),
    "classifier": InterfaceShape(
        {"data": Argument(_NUMBERS | {"texts"})},
        {"label": "string", "probability": "number", "scores": "scores"},
    ),
    "segmenter": InterfaceShape(
        {"series": Argument(_NUMBERS)},
        {"change_points": "indices", "segments": "segments"},
    ),
    "analyzer": InterfaceShape(
        {"texts": Argument(frozenset({"texts"}))},
        {"label": "string", "score": "number", "scores": "scores"},
    ),
}


def describe(types: frozenset[str] | set[str] | str) -> str:
    if isinstance(types, str):
        return _DESCRIBE[types]
    if _NUMBERS <= types:  # interchangeable, so name them once
        types = (types - _NUMBERS) | {"numbers"}
    return " or ".join(_DESCRIBE.get(t, "a list of numbers") for t in sorted(types))


def _number(value: Any) -> float:
    # bool is an int in Python but never a number here; non-finite values have no canonical JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"a number is out of range ({str(value)[:20]}...)") from None
    if not math.isfinite(result):
        raise ValueError("numbers must be finite (no NaN or infinity)")
    return result


def _as(kind: str, value: Any, argument: Argument) -> Any:
    """`value` converted to its canonical form for `kind`; TypeError when it is not of that kind."""
    if kind in _NUMBERS:
        if not isinstance(value, list):
            raise TypeError
        # Floats throughout, so `[1, 2]` and `[1.0, 2.0]` are the same content and the same version.
        return [_number(v) for v in value]
    if kind == "texts":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError
        return list(value)
    if kind == "number":
        return _number(value)
    if kind == "integer":
        # 5.0 is accepted as 5: numbers that passed through a protobuf Struct come back as floats.
        if isinstance(value, float) and value.is_integer() and abs(value) <= INT32_MAX + 1:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        low = argument.minimum if argument.minimum is not None else -INT32_MAX - 1
        if not low <= value <= INT32_MAX:
            raise ValueError(f"must be an integer from {low} to {INT32_MAX}, got {value}")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def coerce_literal(value: Any, argument: Argument) -> Any:
    """A literal argument in canonical form; ValueError (with a reader's message) when it does not fit."""
    for kind in sorted(argument.accepts):
        try:
            return _as(kind, value, argument)
        except TypeError:
            continue
    raise ValueError(f"expected {describe(argument.accepts)}, got {_kind_of(value)}")


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list containing " + ", ".join(sorted({type(v).__name__ for v in value})) if value else "a list"
    return {dict: "a mapping", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
