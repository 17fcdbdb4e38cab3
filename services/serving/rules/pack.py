"""Rule packs: YAML files in configs/rules/ that name rules and their parameters, validated strictly.

    name: ood_default
    description: ...
    rules:
      - rule: OODGuard
        params: {threshold: 6.0}
      - rule: CircuitBreaker

An unknown key, rule or parameter is InvalidArgument naming its path in the file. Binding a pack to a
model puts FiniteGuard and TensorShapeGuard first whatever the pack lists (it may give them parameters).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from services.core.errors import InvalidArgument, NotFound
from services.core.settings import MLSettings
from services.serving.rules import breaker as _breaker  # noqa: F401  registers CircuitBreaker
from services.serving.rules import guards as _guards  # noqa: F401  registers the guards
from services.serving.rules.breaker import CircuitBreaker
from services.serving.rules.guards import FiniteGuard, InputRule, TensorShapeGuard
from services.serving.rules.registry import RuleParams, RuleRegistry
from services.serving.rules.ruleset import RuleSet
from services.serving.rules.view import ModelInfo

PACK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
DEFAULT_PACK = "ood_default"
_MANDATORY = (FiniteGuard, TensorShapeGuard)


def _invalid(source: str, path: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{source}: {path}: {problem}", field="rule_pack")


@dataclass(frozen=True)
class RuleEntry:
    rule: type
    params: RuleParams
    path: str  # "<file>: rules[i]", for errors found when binding


@dataclass(frozen=True)
class RulePack:
    name: str
    description: str
    entries: tuple[RuleEntry, ...]

    def bind(self, info: ModelInfo, settings: MLSettings, *, clock: Callable[[], float] = time.monotonic) -> RuleSet:
        """The pack's rules instantiated for one model; mandatory guards first."""
        given = {entry.rule: entry for entry in self.entries}
        rules: list[InputRule] = []
        for mandatory in _MANDATORY:
            entry = given.get(mandatory)
            rules.append(mandatory(entry.params if entry else mandatory.Params(), info, settings,
                                   entry.path if entry else ""))
        breaker = None
        for entry in self.entries:
            if entry.rule in _MANDATORY:
                continue
            if issubclass(entry.rule, CircuitBreaker):
                breaker = entry.rule(entry.params, clock=clock)
            else:
                rules.append(entry.rule(entry.params, info, settings, entry.path))
        return RuleSet(rules, breaker, pack=self.name)


def parse_rule_pack(document: Any, source: str) -> RulePack:
    """A pack from its parsed YAML; `source` (the file name) prefixes every error."""
    if not isinstance(document, Mapping):
        raise _invalid(source, "(top)", "a rule pack is a mapping with 'rules'")
    for key in document:
        if key not in ("name", "description", "rules"):
            raise _invalid(source, str(key), "unknown key; known: ['description', 'name', 'rules']")
    entries_raw = document.get("rules") or []
    if not isinstance(entries_raw, list):
        raise _invalid(source, "rules", "must be a list")
    entries, seen = [], set()
    for index, raw in enumerate(entries_raw):
        path = f"rules[{index}]"
        if not isinstance(raw, Mapping) or "rule" not in raw:
            raise _invalid(source, path, "each entry is a mapping with 'rule' (and optional 'params')")
        for key in raw:
            if key not in ("rule", "params"):
                raise _invalid(source, f"{path}.{key}", "unknown key; known: ['params', 'rule']")
        name = raw["rule"]
        if not isinstance(name, str) or name not in RuleRegistry.rules:
            raise _invalid(source, f"{path}.rule", f"unknown rule {name!r}; known: {RuleRegistry.names()}")
        if name in seen:
            raise _invalid(source, f"{path}.rule", f"{name} is listed twice")
        seen.add(name)
        rule = RuleRegistry.rules[name]
        params_raw = raw.get("params") or {}
        try:
            params = rule.Params.model_validate(params_raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            problem = ("unknown parameter; known: " + str(sorted(rule.Params.model_fields))
                       if error["type"] == "extra_forbidden" else error["msg"])
            raise _invalid(source, f"{path}.params{'.' + where if where else ''}", problem) from None
        entries.append(RuleEntry(rule, params, f"{source}: {path}"))
    name = document.get("name", Path(source).stem)
    return RulePack(str(name), str(document.get("description", "")), tuple(entries))


class RulePackLoader:
    """Packs by name from a folder (configs/rules/ by default): `<name>.yaml`."""

    def __init__(self, directory: Path | str = Path("configs/rules")) -> None:
        self.directory = Path(directory)

    def load(self, name: str = DEFAULT_PACK) -> RulePack:
        name = name or DEFAULT_PACK
        if not PACK_NAME.match(name):  # no separators: a pack name never leaves the folder
            raise InvalidArgument(f"not a rule pack name: {name!r}", field="rule_pack")
        path = self.directory / f"{name.removesuffix('.yaml')}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in self.directory.glob("*.yaml"))
            raise NotFound(f"no rule pack {name!r} in {self.directory}; known: {known}", field="rule_pack")
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise _invalid(path.name, "(yaml)", str(exc).replace("\n", " ")) from None
        return parse_rule_pack(document, path.name)
