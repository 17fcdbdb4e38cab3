"""`.sha256` sidecars beside weights files, in sha256sum's format: `<hex>  <filename>`.

A sidecar travels with its weights file through every copy (hub, object store, cache), so a weights
file that was swapped or damaged on its own no longer matches the digest written beside it.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from services.core.artifacts.objectstore import sha256_file
from services.core.errors import IntegrityError

SUFFIX = ".sha256"
_MAX_SIDECAR_BYTES = 4096
_LINE = re.compile(r"^([0-9a-fA-F]{64})(?:[ \t]+\*?(\S.*))?$")


def sidecar_name(weights_path: str) -> str:
    return weights_path + SUFFIX


def weights_name(sidecar_path: str) -> str:
    return sidecar_path.removesuffix(SUFFIX)


def is_sidecar(path: str) -> bool:
    return path.endswith(SUFFIX)


def sidecar_text(sha256_hex: str, filename: str) -> str:
    return f"{sha256_hex}  {filename}\n"


def write_sidecar(weights: Path, sha256_hex: str | None = None) -> Path:
    """Write `<weights>.sha256` (hashing the file unless the digest is given); returns its path."""
    weights = Path(weights)
    digest = sha256_hex or sha256_file(weights)[0]
    target = weights.with_name(sidecar_name(weights.name))
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    tmp.write_text(sidecar_text(digest, weights.name), encoding="ascii")
    os.replace(tmp, target)
    return target


def read_sidecar(sidecar: Path, weights_name: str) -> str:
    """The digest a sidecar records for `weights_name`; IntegrityError when it is missing or malformed."""
    label = Path(weights_name).name
    if not sidecar.is_file():
        raise IntegrityError(f"sidecar missing for {weights_name}")
    with open(sidecar, "rb") as fh:
        raw = fh.read(_MAX_SIDECAR_BYTES + 1)
    try:
        line = raw.decode("ascii").strip().splitlines()[0] if len(raw) <= _MAX_SIDECAR_BYTES else ""
    except (UnicodeDecodeError, IndexError):
        line = ""
    match = _LINE.match(line.strip())
    if not match:
        raise IntegrityError(f"sidecar malformed for {weights_name}")
    if match.group(2) is not None and match.group(2).strip() != label:
        raise IntegrityError(f"sidecar mismatch for {weights_name}: it names {match.group(2).strip()!r}")
    return match.group(1).lower()


def check_sidecar(folder: Path, weights_path: str, expected_sha256: str) -> None:
    """The sidecar beside `weights_path` must record `expected_sha256` (the weights file's verified digest)."""
    recorded = read_sidecar(Path(folder) / sidecar_name(weights_path), weights_path)
    if recorded != expected_sha256:
        raise IntegrityError(
            f"sidecar mismatch for {weights_path}: sidecar says {recorded}, the file is {expected_sha256}"
        )
