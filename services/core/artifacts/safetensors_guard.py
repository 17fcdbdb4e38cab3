"""A sanity check of a `.safetensors` header before the file is handed to the safetensors library.

Layout: 8 bytes little-endian header length N, N bytes of JSON, then the tensor data. A hostile file
can claim a huge N so that a reader allocates or parses gigabytes; here N is checked against a limit
and the file size after reading only those 8 bytes, and the JSON is read only when N is acceptable.
Every tensor entry must name a known dtype and a shape whose byte size matches its data offsets, and
the offsets must lie inside the data section without overlapping.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.errors import IntegrityError

# Bits per element of every dtype safetensors writes (sub-byte float formats included).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
    "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}


@dataclass(frozen=True)
class SafetensorsHeader:
    header_bytes: int
    data_bytes: int
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]


def check_safetensors(path: Path, *, max_header_bytes: int, label: str | None = None) -> SafetensorsHeader:
    """The parsed header of a sane safetensors file; IntegrityError naming the check and the file otherwise.
    Reads the 8-byte length first and the header only when that length is acceptable."""
    path = Path(path)
    label = label or path.name
    size = path.stat().st_size
    with open(path, "rb") as fh:
        header_len = _header_length(fh.read(8), size, max_header_bytes, label)
        return _parse(fh.read(header_len), header_len, size, label)


def check_safetensors_bytes(data: memoryview | bytes, *, max_header_bytes: int, label: str) -> SafetensorsHeader:
    """The same checks over a file already in memory (the verified bytes the tensors will be built from)."""
    view = memoryview(data)
    header_len = _header_length(bytes(view[:8]), len(view), max_header_bytes, label)
    return _parse(bytes(view[8:8 + header_len]), header_len, len(view), label)


def _header_length(prefix: bytes, size: int, max_header_bytes: int, label: str) -> int:
    if len(prefix) < 8:
        raise IntegrityError(f"safetensors header missing for {label}: the file has {size} bytes")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > max_header_bytes:
        raise IntegrityError(f"safetensors header too large for {label}: {header_len} bytes, limit {max_header_bytes}")
    if header_len > size - 8:
        raise IntegrityError(f"safetensors header larger than the file for {label}: {header_len} bytes")
    return header_len


def _parse(raw: bytes, header_len: int, size: int, label: str) -> SafetensorsHeader:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise IntegrityError(f"safetensors header is not JSON for {label}") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"safetensors header is not a JSON object for {label}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise IntegrityError(f"safetensors __metadata__ malformed for {label}")
    data_bytes = size - 8 - header_len
    spans = sorted(_tensor_span(name, entry, data_bytes, label) for name, entry in header.items())
    end = 0
    for begin, stop, name in spans:
        if begin < end:
            raise IntegrityError(f"safetensors tensors overlap for {label}: {name}")
        end = stop
    return SafetensorsHeader(header_len, data_bytes, header, metadata)


def _tensor_span(name: str, entry: Any, data_bytes: int, label: str) -> tuple[int, int, str]:
    if not isinstance(entry, dict):
        raise IntegrityError(f"safetensors entry {name!r} malformed for {label}")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise IntegrityError(f"safetensors dtype {dtype!r} of {name!r} unknown for {label}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise IntegrityError(f"safetensors shape of {name!r} malformed for {label}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_bytes
    ):
        raise IntegrityError(f"safetensors offsets of {name!r} lie outside the file for {label}")
    if offsets[1] - offsets[0] != (math.prod(shape) * DTYPE_BITS[dtype] + 7) // 8:
        raise IntegrityError(f"safetensors size of {name!r} does not match its shape for {label}")
    return offsets[0], offsets[1], name
