"""Modules the compiler rebuilds from an artifact's `metadata.architecture` (services/core/models),
with the compiler's statuses: an architecture it cannot rebuild is a FAILED_PRECONDITION of the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from services.core.errors import FailedPrecondition
from services.core.models import architectures


def known_architectures() -> list[str]:
    return sorted(architectures.BUILDERS)


def build_module(architecture: Mapping[str, Any]) -> nn.Module:
    kind = architecture.get("type")
    if kind not in architectures.BUILDERS:
        raise FailedPrecondition(
            f"cannot rebuild architecture {kind!r}; the compiler knows {known_architectures()}",
            field="metadata.architecture.type",
        )
    return architectures.build_module(architecture)


def load_module(architecture: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The eval-mode fp32 module with its weights (strict: weights that do not fit are refused)."""
    module = build_module(architecture)
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise FailedPrecondition(
            f"weights do not fit the architecture: {first[0] if first else exc}", field="metadata.architecture"
        ) from None
    return module.float().eval()
