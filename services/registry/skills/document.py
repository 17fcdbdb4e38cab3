"""Reading a skill document (YAML or JSON text) into plain JSON-shaped data, strictly.

The version of a skill is the hash of its content, so the reader must leave no doubt about what the content
is: duplicate keys are refused (which one would count?), YAML 1.1's surprises are switched off (`yes` and
`on` are strings, `010` is ten, `1e5` is a number, dates are strings), and only JSON's types come out.
Aliases are refused outright: a few kilobytes of nested aliases expand to billions of nodes, which a byte
limit alone does not stop.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

from services.core.errors import InvalidArgument
from services.registry.skills.invalid import join

DOCUMENT_FIELD = "spec_yaml"
MAX_DEPTH = 32


class _Mapping(dict):
    """A mapping that remembers the first problem with its keys, reported later with its full path."""

    problem: tuple[str | None, str] | None = None  # (key as written or None for the mapping, message)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's scalars, no aliases, bounded depth, recorded key problems."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed; write the value out", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        mapping = _Mapping()
        yield mapping
        for key_node, value_node in node.value:
            key = self.construct_object(key_node)
            if not isinstance(key, str):
                where = (key_node.value, "") if isinstance(key_node, yaml.ScalarNode) else (None, " as a key")
                line = key_node.start_mark.line + 1
                mapping.problem = mapping.problem or (
                    where[0],
                    f"mapping keys must be strings, found {type(key).__name__}{where[1]} (line {line}); quote the key",
                )
                continue
            if key in mapping:
                mapping.problem = mapping.problem or (
                    key,
                    f"duplicate key {key!r} (line {key_node.start_mark.line + 1}); a key may appear once",
                )
            mapping[key] = self.construct_object(value_node)

    # Explicit tags (`!!int x`) reach these constructors too, so each checks its text.
    def construct_scalar_of(self, node: yaml.ScalarNode) -> Any:
        kind = node.tag.rsplit(":", 1)[-1]
        text = node.value
        try:
            if kind == "bool":
                return {"true": True, "false": False}[text.lower()]
            return int(text) if kind == "int" else float(text)
        except (KeyError, ValueError):  # includes Python refusing thousands of digits
            raise ConstructorError(None, None, f"{text[:40]!r} is not a valid {kind}", node.start_mark) from None

    def construct_refused(self, node: yaml.Node) -> Any:
        raise ConstructorError(None, None, f"the tag {node.tag!r} is not allowed in a skill spec", node.start_mark)


_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
# YAML 1.2 floats: JSON's number syntax, so `1e5` is a number as it is in JSON (YAML 1.1 made it a string).
FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+.0123456789"))
_SpecLoader.add_constructor("tag:yaml.org,2002:map", _SpecLoader.construct_yaml_map)
for _tag in ("bool", "int", "float"):
    _SpecLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _SpecLoader.construct_scalar_of)
for _tag in ("timestamp", "binary", "set", "omap", "pairs", "merge", "value", "yaml"):
    _SpecLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _SpecLoader.construct_refused)


def _load_yaml(text: str) -> Any:
    loader = _SpecLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        detail = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise InvalidArgument(f"malformed YAML{where}: {detail}", field=DOCUMENT_FIELD) from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"malformed YAML: {exc}", field=DOCUMENT_FIELD) from None
    finally:
        loader.dispose()


def _json_object(pairs: list[tuple[str, Any]]) -> _Mapping:
    mapping = _Mapping()
    for key, value in pairs:
        if key in mapping and mapping.problem is None:
            mapping.problem = (key, f"duplicate key {key!r}; a key may appear once")
        mapping[key] = value
    return mapping


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a skill spec may hold")


def _load_json(text: str) -> Any:
    """The JSON value, or None when the text is not JSON (a YAML flow mapping also starts with `{`)."""
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        return None
    except ValueError as exc:  # a refused constant, an integer too long to convert
        raise InvalidArgument(f"malformed JSON: {exc}", field=DOCUMENT_FIELD) from None


def _plain(value: Any, path: str, depth: int) -> Any:
    """`value` as plain JSON-shaped data; the first problem found is raised with its path."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"nested deeper than {MAX_DEPTH} levels", field=path or DOCUMENT_FIELD)
    if isinstance(value, dict):
        if isinstance(value, _Mapping) and value.problem:
            key, message = value.problem
            raise InvalidArgument(message, field=join(path, key) if key is not None else path or DOCUMENT_FIELD)
        return {_text(k, join(path, k)): _plain(v, join(path, k), depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, join(path, i), depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):
        return _text(value, path)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise InvalidArgument(f"a value of type {type(value).__name__} is not allowed", field=path or DOCUMENT_FIELD)


def plain_data(value: Any) -> Any:
    """`value` checked and copied as plain JSON-shaped data (dicts, lists, str, int, float, bool, None)."""
    try:
        return _plain(value, "", 0)
    except RecursionError:
        raise InvalidArgument("the spec is nested too deeply", field=DOCUMENT_FIELD) from None


def _text(value: str, path: str) -> str:
    """Surrogate pairs (`"\\ud83d\\ude00"` escapes in YAML) joined, so every spelling gives the same text."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise InvalidArgument("text holds an unpaired UTF-16 surrogate", field=path or DOCUMENT_FIELD) from None


def load_document(text: str, *, max_bytes: int) -> Any:
    """Parses YAML or JSON text into dicts, lists, strings, numbers, booleans and None."""
    if not isinstance(text, str):
        raise InvalidArgument("the spec must be text (YAML or JSON)", field=DOCUMENT_FIELD)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument(f"the spec is {size} bytes; the limit is {max_bytes}", field=DOCUMENT_FIELD)
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InvalidArgument("the spec is empty", field=DOCUMENT_FIELD)
    try:
        data = _load_json(text) if text.lstrip().startswith("{") else None
        if data is None:
            data = _load_yaml(text)
    except RecursionError:
        raise InvalidArgument("the spec is nested too deeply", field=DOCUMENT_FIELD) from None
    return plain_data(data)
