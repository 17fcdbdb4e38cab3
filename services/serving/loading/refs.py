"""What a Deploy's `model` names, parsed once: a registered artifact, a compiled artifact, or a builtin.

    sha256:<hex> | name@alias | name        an artifact in the registry (name = name@latest)
    compiled:sha256:<hex>                   a compiler's output; its source artifact gives the metadata
    builtin:changepoint                     the algorithmic change-point Segmenter (no artifact at all)

Builtins are reserved names under "builtin:", so no registry name can shadow them (registry names
never contain a colon).

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.core.canonical import CONTENT_ID
from services.core.errors import InvalidArgument
from services.core.naming import check_alias, check_name

COMPILED_PREFIX = "compiled:"
BUILTIN_PREFIX = "builtin:"
CHANGEPOINT = "builtin:changepoint"
BUILTINS = (CHANGEPOINT,)

RefKind = Literal["artifact", "compiled", "builtin"]


@dataclass(frozen=True)
class ModelRef:
    kind: RefKind
    value: str      # the artifact ref, the compiled id (sha256:<hex>) or the builtin's name
    text: str       # the reference as given, reported back as the session's `model`


def parse_model_ref(text: str) -> ModelRef:
    text = (text or "").strip()
    if not text:
        raise InvalidArgument("is required: 'sha256:<hex>', 'name@alias', 'name', 'compiled:sha256:<hex>' "
                              f"or one of {list(BUILTINS)}", field="model")
    if text.startswith(BUILTIN_PREFIX):
        if text not in BUILTINS:
            raise InvalidArgument(f"unknown builtin model {text!r}; known: {list(BUILTINS)}", field="model")
        return ModelRef("builtin", text, text)
    if text.startswith(COMPILED_PREFIX):
        compiled_id = text.removeprefix(COMPILED_PREFIX)
        if not CONTENT_ID.match(compiled_id):
            raise InvalidArgument("a compiled artifact is 'compiled:sha256:<64 hex digits>'", field="model")
        return ModelRef("compiled", compiled_id, text)
    if text.startswith("sha256:"):
        if not CONTENT_ID.match(text):
            raise InvalidArgument("an artifact id is 'sha256:<64 hex digits>'", field="model")
        return ModelRef("artifact", text, text)
    name, at, alias = text.partition("@")
    check_name(name, field="model")
    if at:
        check_alias(alias, field="model")
    return ModelRef("artifact", text, text)
