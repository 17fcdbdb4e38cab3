"""`@register_compiler("alias")` and the catalog a service builds from the registered classes.

Registration records classes only (a table of types, like the architecture builders); instances, which
hold settings and probe results, are made by the composition root through `CompilerCatalog.build`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.compiler.compilers.base import Compiler
from services.compiler.settings import CompilerSettings
from services.core.errors import FailedPrecondition, InvalidArgument

_CLASSES: dict[str, type[Compiler]] = {}
# Names a request may use beside aliases and canonical targets.
TARGET_SYNONYMS = {"torchscript": "pt", "aoti": "pt2", "quantization": "int8", "tensorrt": "plan", "engine": "plan"}


def register_compiler(alias: str) -> Callable[[type[Compiler]], type[Compiler]]:
    def register(cls: type[Compiler]) -> type[Compiler]:
        known = _CLASSES.get(alias)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"compiler alias {alias!r} is taken by {known.__qualname__}")
        if not cls.targets:
            raise TypeError(f"{cls.__qualname__} declares no targets")
        cls.alias = alias
        _CLASSES[alias] = cls
        return cls

    return register


def registered_classes() -> dict[str, type[Compiler]]:
    """Every registered compiler class; importing the built-in modules registers them."""
    from services.compiler.compilers import onnx, quantization, tensorrt, torchscript  # noqa: F401

    return dict(_CLASSES)


@dataclass(frozen=True)
class Resolved:
    compiler: Compiler
    target: str


class CompilerCatalog:
    """The compilers of one service, and which compiler makes which target."""

    def __init__(self, compilers: Iterable[Compiler]) -> None:
        self._compilers = {c.alias: c for c in compilers}
        self._targets: dict[str, Resolved] = {}
        for compiler in self._compilers.values():
            for target in compiler.targets:
                if target in self._targets:
                    raise TypeError(f"target {target!r} is made by two compilers")
                self._targets[target] = Resolved(compiler, target)

    @classmethod
    def build(cls, settings: CompilerSettings, aliases: Iterable[str] | None = None) -> "CompilerCatalog":
        classes = registered_classes()
        chosen = list(aliases) if aliases is not None else sorted(classes)
        return cls(classes[alias](settings) for alias in chosen)

    @property
    def compilers(self) -> list[Compiler]:
        return [self._compilers[a] for a in sorted(self._compilers)]

    def names(self) -> list[str]:
        return sorted({*self._compilers, *self._targets, *(s for s, t in TARGET_SYNONYMS.items() if t in self._targets)})

    def resolve(self, name: str) -> Resolved:
        """A compiler alias (its default target), a target, or a synonym -> (compiler, target)."""
        key = (name or "").strip().lower()
        if key in self._compilers and key not in self._targets:
            compiler = self._compilers[key]
            return Resolved(compiler, compiler.default_target)
        key = TARGET_SYNONYMS.get(key, key) if key not in self._targets else key
        if key not in self._targets:
            raise InvalidArgument(f"unknown target {name!r}; known: {self.names()}", field="target")
        return self._targets[key]

    def available(self, name: str) -> Resolved:
        """Like `resolve`, and fails fast when the compiler cannot run on this machine."""
        resolved = self.resolve(name)
        state = resolved.compiler.availability()
        if not state.available:
            raise FailedPrecondition(
                f"the {resolved.compiler.alias} compiler is unavailable here: {state.reason}", field="target"
            )
        return resolved
