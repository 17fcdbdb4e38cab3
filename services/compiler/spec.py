"""A compile request as the domain sees it; `public()` is what the durable operation records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.compiler.validation import ValidationPolicy


@dataclass(frozen=True)
class CompileSpec:
    artifact: str  # "sha256:<hex>", "name@alias" or "name"
    target: str  # a compiler alias, a target or a synonym (see CompilerCatalog.resolve)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    max_batch_size: int = 0  # 0: the service default

    def public(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "target": self.target, "kwargs": dict(self.kwargs),
                "validation": self.validation.public(), "max_batch_size": self.max_batch_size}
