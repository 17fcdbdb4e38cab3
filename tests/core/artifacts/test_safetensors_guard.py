"""The safetensors header guard: bloated, truncated and inconsistent headers are refused before loading."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from services.core.artifacts.safetensors_guard import check_safetensors
from services.core.errors import IntegrityError

LIMIT = 100 * 1024 * 1024


def raw_file(path, header: dict | bytes, data: bytes = b"", claimed_len: int | None = None):
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if claimed_len is None else claimed_len) + body + data)
    return path


def test_a_real_file_passes(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.ones(2, dtype=torch.bfloat16), "e": torch.zeros(0)}, str(path),
              metadata={"format": "pt"})
    header = check_safetensors(path, max_header_bytes=LIMIT)
    assert set(header.tensors) == {"a", "b", "e"} and header.metadata == {"format": "pt"}


def test_a_bloated_header_is_refused_without_reading_it(tmp_path):
    # A 1 GiB sparse file claiming a 900 MiB header: refused after reading 8 bytes, instantly.
    path = tmp_path / "bloated.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", 900 * 1024 * 1024))
        fh.truncate(1024**3)
    started = time.perf_counter()
    with pytest.raises(IntegrityError, match="safetensors header too large for bloated.safetensors"):
        check_safetensors(path, max_header_bytes=LIMIT)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("make, check", [
    (lambda p: raw_file(p, {}, claimed_len=2**63), "header too large"),
    (lambda p: raw_file(p, {"a": {}}, claimed_len=4096), "header larger than the file"),
    (lambda p: p.write_bytes(b"\x01\x02") and p, "header missing"),
    (lambda p: raw_file(p, b"{not json"), "not JSON"),
    (lambda p: raw_file(p, b"[1, 2]"), "not a JSON object"),
    (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
     "offsets of 'a' lie outside the file"),
    (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
     "size of 'a' does not match its shape"),
    (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "overlap"),
    (lambda p: raw_file(p, {"a": {"dtype": "OBJ", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "dtype 'OBJ'"),
    (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}), "shape of 'a'"),
    (lambda p: raw_file(p, {"__metadata__": {"k": 1}}), "__metadata__ malformed"),
])
def test_malformed_headers_are_refused(tmp_path, make, check):
    path = make(tmp_path / "w.safetensors")
    with pytest.raises(IntegrityError, match=check) as info:
        check_safetensors(path, max_header_bytes=LIMIT)
    assert "w.safetensors" in str(info.value)


def test_the_limit_is_a_setting(tmp_path):
    header = {"__metadata__": {"pad": "x" * 5000}}
    path = raw_file(tmp_path / "w.safetensors", header)
    check_safetensors(path, max_header_bytes=LIMIT)
    with pytest.raises(IntegrityError, match="header too large"):
        check_safetensors(path, max_header_bytes=4096)
