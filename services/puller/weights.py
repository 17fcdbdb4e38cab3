"""Weight file kinds, and the one way pickle weights are ever read: `torch.load(weights_only=True)`.

Pickle can run code on load, so pickle files are never stored as they are: an operator-allowed pickle
is loaded weights-only (tensors and plain containers, no arbitrary globals) and stored as safetensors.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from services.core.errors import FailedPrecondition, IntegrityError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
SAFETENSORS_SUFFIX = ".safetensors"
# Containers some checkpoints wrap their state dict in.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def is_pickle(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES)


def is_safetensors(path: str) -> bool:
    return path.lower().endswith(SAFETENSORS_SUFFIX)


def safetensors_path(path: str) -> str:
    """Where converted weights go: the same path with a .safetensors suffix."""
    return str(PurePosixPath(path).with_suffix(SAFETENSORS_SUFFIX))


def load_weights_only(path: Path, label: str) -> dict[str, Any]:
    """A flat {name: tensor} state dict, read with weights_only=True; anything else is refused."""
    import torch  # imported on use: the puller's control plane does not need it

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        # weights_only refuses any global outside its allow-list: that is a checkpoint carrying code.
        raise IntegrityError(
            f"{label}: refused: not a weights-only checkpoint ({type(exc).__name__}); nothing was executed"
        ) from None
    return _state_dict(loaded, label, torch.Tensor)


def _state_dict(loaded: Any, label: str, tensor_type: type) -> dict[str, Any]:
    if isinstance(loaded, Mapping):
        for key in _WRAPPER_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, tensor_type) for v in inner.values()):
                loaded = inner
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise FailedPrecondition(f"{label}: not a state dict (a mapping of names to tensors)")
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, tensor_type)]
    if bad:
        raise FailedPrecondition(f"{label}: entries that are not tensors: {', '.join(bad[:5])}")
    return dict(loaded)
