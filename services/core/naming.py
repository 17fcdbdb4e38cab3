"""Artifact names and aliases, checked the same way wherever a name enters the mesh."""

from __future__ import annotations

import re

from services.core.errors import InvalidArgument

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
ALIAS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
LATEST = "latest"


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
