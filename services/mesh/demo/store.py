"""A local content-addressed, write-once object store: bytes live at `<root>/sha256/<hex>`.

Only plain folders: an `s3://` store is written by the services that own uploads, not by the demo.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from services.core.errors import FailedPrecondition, IntegrityError


def local_root(object_store_url: str) -> Path:
    if object_store_url.startswith("file://"):
        object_store_url = object_store_url[len("file://"):]
    if "://" in object_store_url:
        raise FailedPrecondition(
            f"the demo writes only a local object store folder, not {object_store_url}", field="object_store_url"
        )
    return Path(object_store_url).expanduser().absolute()


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, hex_digest: str) -> Path:
        return self.root / "sha256" / hex_digest

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store `data` under its SHA-256; returns (hex, created). Existing different bytes are refused."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_of(digest)
        if target.exists():
            self._check(target, digest)
            return digest, False
        target.parent.mkdir(parents=True, exist_ok=True)
        # Complete temp file, then link(): link fails when the target exists, so there is never a
        # half-written object and never an overwrite, even with concurrent writers.
        tmp = target.with_name(f".{digest}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, target)
            except FileExistsError:
                self._check(target, digest)
                return digest, False
        finally:
            tmp.unlink(missing_ok=True)
        return digest, True

    @staticmethod
    def _check(target: Path, digest: str) -> None:
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        if actual != digest:
            raise IntegrityError(f"object {target} holds different bytes (sha256 {actual}); refusing to overwrite",
                                 field="object_store")
