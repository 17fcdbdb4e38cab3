"""Deserialising weights from bytes that were hashed in memory, never from a live file mapping.

`safetensors.torch.load_file` returns tensors backed by a mapping of the file: a later in-place
write to the cached file silently changes a model that was verified and cached (and a truncation can
crash the process with SIGBUS). So a weights file is read once into private memory, that buffer is
hashed against the manifest's (signature-verified) digest, and the tensors are views of the buffer:
what runs is exactly the bytes that were verified, at one copy of the file's size.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

from services.core.artifacts.manifest import ManifestFile
from services.core.artifacts.safetensors_guard import check_safetensors_bytes
from services.core.errors import IntegrityError

_TORCH_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64",
}


def read_verified(path: Path, entry: ManifestFile) -> bytearray:
    """The file's bytes in private memory, refused unless they are exactly the manifest's size and digest."""
    buffer = bytearray(entry.size)
    view, filled = memoryview(buffer), 0
    with open(path, "rb") as fh:
        while filled < entry.size and (count := fh.readinto(view[filled:])):
            filled += count
        longer = bool(fh.read(1))
    if filled != entry.size or longer:
        raise IntegrityError(f"size mismatch for {entry.path}: it changed after verification")
    if hashlib.sha256(buffer).hexdigest() != entry.sha256:
        raise IntegrityError(f"sha256 mismatch for {entry.path}: it changed after verification")
    return buffer


def safetensors_from_buffer(buffer: bytearray, *, max_header_bytes: int, label: str) -> dict[str, Any]:
    """Tensors as views of `buffer` (checked by the header guard first)."""
    import torch

    header = check_safetensors_bytes(buffer, max_header_bytes=max_header_bytes, label=label)
    if any(entry["dtype"] not in _TORCH_DTYPES for entry in header.tensors.values()):
        return _safetensors_copy(bytes(buffer), label)  # sub-byte float formats: let safetensors decode them
    start = 8 + header.header_bytes
    tensors = {}
    for name, entry in header.tensors.items():
        dtype, shape = getattr(torch, _TORCH_DTYPES[entry["dtype"]]), entry["shape"]
        count = math.prod(shape)
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            offset = start + entry["data_offsets"][0]
            tensors[name] = torch.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
    return tensors


def pickle_weights_only(buffer: bytearray, label: str) -> dict[str, Any]:
    """`torch.load(weights_only=True)` over verified bytes; anything but a dict of tensors is refused."""
    import pickle

    import torch

    try:
        loaded = torch.load(io.BytesIO(buffer), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, TypeError, EOFError, AttributeError) as exc:
        raise IntegrityError(f"pickle weights rejected by weights_only loading for {label}: {exc}") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise IntegrityError(f"pickle weights for {label} are not a state dict of tensors")
    return dict(loaded)


def _safetensors_copy(data: bytes, label: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise IntegrityError(f"safetensors unreadable for {label}: {exc}") from None
