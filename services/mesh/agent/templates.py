"""The plan's template syntax: `${inputs.NAME...}` and `${steps.ID...}`, strict on purpose.

A path is dot-separated: object keys, or non-negative integers indexing lists (`${inputs.rows.0}`).
A string that is exactly one reference becomes the referenced value itself, whatever its type (a list of
rows stays a list); references embedded in longer text (`compiled:${steps.compile.compiled.id}`) must
name a string or a number, which is written into the text. Anything else that starts with `${` is an
error, never literal text: an agent's arguments are not the place for guesses.

Two checks, so a plan fails as early as it can: `check` (when the spec loads) refuses malformed
references, unknown inputs and steps that have not run yet; `render` (just before a step's call) refuses
a path that names nothing in the actual results, saying which step, which argument and what exists there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any

from services.core.errors import InvalidArgument

_REF = re.compile(r"\$\{([^{}$]*)\}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
ROOTS = ("inputs", "steps")


class TemplateError(InvalidArgument):
    """A reference that is malformed, or that does not resolve; `field` says where in the plan it is."""


@dataclass(frozen=True)
class Ref:
    text: str                    # as written, e.g. "${steps.serve.session.id}"
    root: str                    # "inputs" or "steps"
    path: tuple[str, ...]        # ("serve", "session", "id")


def parse(text: str, where: str) -> list[Ref]:
    """Every reference in `text`; TemplateError for a `${` that does not open a well-formed one."""
    refs, position = [], 0
    while (start := text.find("${", position)) >= 0:
        match = _REF.match(text, start)
        if match is None:
            raise TemplateError(f"unterminated or nested reference in {text!r}", field=where)
        root, *path = match.group(1).split(".")
        if root not in ROOTS or not path or not all(_SEGMENT.fullmatch(p) for p in path):
            raise TemplateError(f"{match.group(0)} is not a reference: write ${{inputs.NAME...}} or "
                                f"${{steps.STEP_ID...}} with dot-separated keys or list indexes", field=where)
        refs.append(Ref(match.group(0), root, tuple(path)))
        position = match.end()
    return refs


def walk(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(location, string) for every string inside nested arguments."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from walk(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{where}[{index}]")


def check(arguments: Any, where: str, *, inputs: Set[str], earlier: Set[str]) -> None:
    """Static check of a step's arguments: the inputs exist and the steps ran before this one."""
    for location, text in walk(arguments, where):
        for ref in parse(text, location):
            head = ref.path[0]
            if ref.root == "inputs" and head not in inputs:
                known = ", ".join(sorted(inputs)) or "none"
                raise TemplateError(f"{ref.text}: the plan declares no input {head!r} (inputs: {known})",
                                    field=location)
            if ref.root == "steps" and head not in earlier:
                ran = ", ".join(sorted(earlier)) or "none"
                raise TemplateError(f"{ref.text}: no step {head!r} has run before this one (earlier steps: {ran})",
                                    field=location)


def render(value: Any, where: str, context: Mapping[str, Any]) -> Any:
    """`value` with every reference replaced from `context` ({"inputs": ..., "steps": ...})."""
    if isinstance(value, Mapping):
        return {key: render(item, f"{where}.{key}", context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, f"{where}[{index}]", context) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    refs = parse(value, where)
    if len(refs) == 1 and refs[0].text == value:
        return resolve(refs[0], where, context)

    def interpolate(match: re.Match) -> str:
        ref = parse(match.group(0), where)[0]
        found = resolve(ref, where, context)
        if isinstance(found, bool) or not isinstance(found, (str, int, float)):
            raise TemplateError(f"{ref.text} is a {type(found).__name__}; only a string or a number can be "
                                f"written inside text (make the reference the whole value instead)", field=where)
        return str(found)

    return _REF.sub(interpolate, value)


def resolve(ref: Ref, where: str, context: Mapping[str, Any]) -> Any:
    current: Any = context.get(ref.root, {})
    walked = ref.root
    for part in ref.path:
        if isinstance(current, Mapping):
            if part not in current:
                keys = ", ".join(sorted(map(str, current))) or "nothing"
                raise TemplateError(f"{ref.text} does not resolve: {walked} has no {part!r} (it has: {keys})",
                                    field=where)
            current = current[part]
        elif isinstance(current, list):
            if not part.isdigit() or int(part) >= len(current):
                raise TemplateError(f"{ref.text} does not resolve: {walked} is a list of {len(current)}, "
                                    f"and {part!r} is not an index into it", field=where)
            current = current[int(part)]
        else:
            raise TemplateError(f"{ref.text} does not resolve: {walked} is a {type(current).__name__}, "
                                f"not an object or a list", field=where)
        walked = f"{walked}.{part}"
    return current
