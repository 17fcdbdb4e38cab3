"""A small registry of components by kind and name (the seed's `register(kind, name, cls)`).

The composition root builds one with `interface_registry()`; nothing is registered at import time.
"""

from __future__ import annotations

from services.core.errors import AlreadyExists, NotFound
from services.serving.interfaces.base import INTERFACE_CLASSES


class ComponentRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, type]] = {}

    def register(self, kind: str, name: str, cls: type) -> type:
        names = self._kinds.setdefault(kind, {})
        if names.get(name, cls) is not cls:
            raise AlreadyExists(f"{kind} {name!r} is already registered as {names[name].__qualname__}")
        names[name] = cls
        return cls

    def get(self, kind: str, name: str) -> type:
        try:
            return self._kinds[kind][name]
        except KeyError:
            raise NotFound(f"no {kind} named {name!r}; known: {self.names(kind)}", field=kind) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._kinds.get(kind, {}))


def interface_registry() -> ComponentRegistry:
    """The five interfaces under kind="interface"."""
    registry = ComponentRegistry()
    for cls in INTERFACE_CLASSES:
        registry.register("interface", cls.kind, cls)
    return registry
