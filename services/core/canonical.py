"""Canonical JSON and content ids: the one place that decides what "the same content" means."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
CONTENT_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


def canonical_json(value: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 kept as is: equal content gives equal text.

    Integral floats are written as integers (as RFC 8785 does), so a manifest that crossed a
    protobuf Struct (where every number is a double) hashes like the one its author built.
    """
    return json.dumps(
        _integral_floats_as_ints(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_integral_floats_as_ints(item) for item in value]
    return value


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def content_id(value: Any) -> str:
    """`sha256:<hex>` of the canonical JSON of `value`."""
    return "sha256:" + sha256_hex(canonical_json(value))


def find_non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity inside `value` (canonical JSON cannot carry them), or None."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = find_non_finite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}")
        if found:
            return found
    return None
