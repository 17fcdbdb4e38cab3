"""RuleRegistry: the metaclass that registers every rule class under the name it declares.

A rule pack refers to rules by these names. Abstract bases declare no name and are not registered.
"""

from __future__ import annotations

from abc import ABCMeta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from services.core.errors import NotFound


class RuleRegistry(ABCMeta):
    rules: ClassVar[dict[str, type]] = {}

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any):
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        rule_name = namespace.get("name")
        if isinstance(rule_name, str) and rule_name:
            known = mcs.rules.get(rule_name)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"rule name {rule_name!r} is taken by {known.__qualname__}")
            mcs.rules[rule_name] = cls
        return cls

    @classmethod
    def get(mcs, name: str) -> type:
        try:
            return mcs.rules[name]
        except KeyError:
            raise NotFound(f"unknown rule {name!r}; known: {sorted(mcs.rules)}") from None

    @classmethod
    def names(mcs) -> list[str]:
        return sorted(mcs.rules)


class RuleParams(BaseModel):
    """Base of every rule's parameters: strict, so a misspelt parameter in a pack is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(metaclass=RuleRegistry):
    """A rule class declares `name` (registered) and `Params` (validated from the pack)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[RuleParams]] = RuleParams

    def __init__(self, params: RuleParams) -> None:
        self.params = params
