"""The content-addressed, write-once object store, over `obstore` (a local folder or an S3-compatible bucket).

Blobs live at `sha256/<hex>` of their bytes. A key is written once: storing the same bytes again is a
no-op, and a key that already holds other bytes is an IntegrityError. Uploads and downloads stream;
a download is hashed on the way and renamed into place only when it matches, so a destination path
never holds a partial or unverified file.

obstore runs a conditional put (`mode="create"`) as one single-part request that holds the whole body
in memory, so only small files go that way. Large files stream as a multipart upload to a unique
staging key, and a server-side copy that refuses to overwrite (`copy(overwrite=False)`) moves them to
their content key. The blocking obstore calls and the hashing run in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError
from obstore.store import LocalStore, S3Store

from services.core.canonical import SHA256_HEX
from services.core.errors import IntegrityError, InvalidArgument, NotFound, Unavailable
from services.core.settings import ObjectStoreSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int


def content_key(sha256_hex: str) -> str:
    if not SHA256_HEX.match(sha256_hex):
        raise InvalidArgument("must be 64 lowercase hex digits", field="sha256")
    return f"sha256/{sha256_hex}"


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex digest and size of a file, read in blocks (never whole into memory)."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        return digest, fh.tell()


@contextmanager
def _backend_errors(key: str) -> Iterator[None]:
    """obstore's errors as domain errors; the backend's text (endpoints, request ids) is logged only."""
    try:
        yield
    except AlreadyExistsError:
        raise  # write-once refusals are decided by the caller
    except (FileNotFoundError, NotFoundError):
        raise NotFound(f"object {key} not found") from None
    except BaseError as exc:
        log.warning("object store request for %s failed: %s", key, exc)
        raise Unavailable(f"object store request for {key} failed ({type(exc).__name__})") from None


def _is_loopback(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ObjectStore:
    """A content-addressed store; build it with `from_url`."""

    def __init__(self, backend: Any, *, url: str, settings: ObjectStoreSettings | None = None) -> None:
        settings = settings or ObjectStoreSettings()
        self.backend = backend
        self.url = url
        self._chunk = settings.upload_chunk_bytes
        self._concurrency = settings.upload_concurrency

    @classmethod
    def from_url(cls, url: str, *, s3_options: ObjectStoreSettings | None = None) -> "ObjectStore":
        """A plain path or file:// URL is a local folder (made when absent); s3://bucket/prefix is S3."""
        settings = s3_options or ObjectStoreSettings()
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            root = Path(parsed.path if parsed.scheme == "file" else url).expanduser().absolute()
            root.mkdir(parents=True, exist_ok=True)
            return cls(LocalStore(root), url=str(root), settings=settings)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidArgument("must be a folder, file://PATH or s3://BUCKET[/PREFIX]", field="object_store_url")
        return cls(_s3_backend(parsed.netloc, parsed.path.strip("/"), settings), url=url, settings=settings)

    # -- async API: each call runs its blocking half in a worker thread -------------------------------

    async def put_file(self, path: Path, *, expected_sha256: str | None = None) -> StoredObject:
        return await asyncio.to_thread(self._put_file, Path(path), expected_sha256)

    async def put_bytes(self, data: bytes) -> StoredObject:
        return await asyncio.to_thread(self._put_bytes, bytes(data))

    async def fetch(
        self,
        sha256_hex: str,
        dest: Path,
        *,
        expected_size: int | None = None,
        label: str | None = None,
        tmp_dir: Path | None = None,
    ) -> StoredObject:
        """Stream a blob to `dest`, verified. The partial file lives in `tmp_dir` (default: beside `dest`;
        give a folder on the same filesystem to keep a destination folder free of stray files)."""
        return await asyncio.to_thread(self._fetch, sha256_hex, Path(dest), expected_size, label, tmp_dir)

    async def exists(self, sha256_hex: str) -> bool:
        return await asyncio.to_thread(self._head, content_key(sha256_hex)) is not None

    async def put_once(self, key: str, data: bytes) -> bool:
        """Write a small non-content object (e.g. a metadata sidecar) if absent; True when this call wrote it."""
        return await asyncio.to_thread(self._put_once, key, bytes(data))

    async def get_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get_bytes, key)

    # -- blocking implementations ---------------------------------------------------------------------

    def _head(self, key: str) -> dict | None:
        try:
            with _backend_errors(key):
                return obstore.head(self.backend, key)
        except NotFound:
            return None

    def _get_bytes(self, key: str) -> bytes:
        with _backend_errors(key):
            return bytes(obstore.get(self.backend, key).bytes())

    def _put_once(self, key: str, data: bytes) -> bool:
        try:
            with _backend_errors(key):
                obstore.put(self.backend, key, data, mode="create")
            return True
        except AlreadyExistsError:
            return False

    def _put_bytes(self, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        key = content_key(digest)
        if self._head(key) is None and self._put_once(key, data):
            return StoredObject(key, digest, len(data))
        self._verify_existing(key, digest, len(data))
        return StoredObject(key, digest, len(data))

    def _put_file(self, path: Path, expected_sha256: str | None) -> StoredObject:
        digest, size = sha256_file(path)
        if expected_sha256 is not None and expected_sha256 != digest:
            raise IntegrityError(f"sha256 mismatch for {path.name}: expected {expected_sha256}, got {digest}")
        key = content_key(digest)
        if self._head(key) is not None:
            self._verify_existing(key, digest, size)
        elif size <= self._chunk:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise IntegrityError(f"{path.name} changed while it was stored")
            if not self._put_once(key, data):
                self._verify_existing(key, digest, size)
        else:
            self._put_large(path, key, digest, size)
        return StoredObject(key, digest, size)

    def _put_large(self, path: Path, key: str, digest: str, size: int) -> None:
        staging = f"staging/{secrets.token_hex(16)}"
        hasher, seen = hashlib.sha256(), [0]

        def blocks() -> Iterator[bytes]:
            # Hash what is actually sent, so a file that changes mid-upload cannot land under the old key.
            with open(path, "rb") as fh:
                while block := fh.read(self._chunk):
                    hasher.update(block)
                    seen[0] += len(block)
                    yield block

        try:
            with _backend_errors(staging):
                obstore.put(self.backend, staging, blocks(), chunk_size=self._chunk, max_concurrency=self._concurrency)
            if hasher.hexdigest() != digest or seen[0] != size:
                raise IntegrityError(f"{path.name} changed while it was stored")
            try:
                with _backend_errors(key):
                    obstore.copy(self.backend, staging, key, overwrite=False)
            except AlreadyExistsError:
                self._verify_existing(key, digest, size)
        finally:
            try:
                obstore.delete(self.backend, staging)
            except (FileNotFoundError, BaseError):
                log.warning("could not delete staging object %s", staging)

    def _verify_existing(self, key: str, digest: str, size: int) -> None:
        """A write of bytes already present is a no-op only if the stored bytes really are those bytes."""
        meta = self._head(key)
        if meta is None:
            raise Unavailable(f"object {key} vanished during a write")
        if meta["size"] != size:
            raise IntegrityError(f"{key} already holds different bytes ({meta['size']} bytes, not {size})")
        hasher = hashlib.sha256()
        with _backend_errors(key):
            for block in obstore.get(self.backend, key).stream(min_chunk_size=self._chunk):
                hasher.update(block)
        if hasher.hexdigest() != digest:
            raise IntegrityError(f"{key} already holds different bytes (sha256 {hasher.hexdigest()})")

    def _fetch(
        self, digest: str, dest: Path, expected_size: int | None, label: str | None, tmp_dir: Path | None
    ) -> StoredObject:
        key = content_key(digest)
        label = label or key
        dest.parent.mkdir(parents=True, exist_ok=True)
        if tmp_dir is not None:
            Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tmp_dir or dest.parent) / f".{dest.name}.{secrets.token_hex(6)}.part"
        hasher, size = hashlib.sha256(), 0
        try:
            with _backend_errors(key), open(tmp, "wb") as fh:
                for block in obstore.get(self.backend, key).stream(min_chunk_size=self._chunk):
                    size += len(block)
                    if expected_size is not None and size > expected_size:
                        # Stop reading a blob that is larger than recorded instead of downloading all of it.
                        raise IntegrityError(f"size mismatch for {label}: more than {expected_size} bytes")
                    hasher.update(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            if expected_size is not None and size != expected_size:
                raise IntegrityError(f"size mismatch for {label}: expected {expected_size} bytes, got {size}")
            if hasher.hexdigest() != digest:
                raise IntegrityError(f"sha256 mismatch for {label}: expected {digest}, got {hasher.hexdigest()}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return StoredObject(key, digest, size)


def _s3_backend(bucket: str, prefix: str, settings: ObjectStoreSettings) -> S3Store:
    config: dict[str, Any] = {"region": settings.s3_region, "copy_if_not_exists": settings.s3_copy_if_not_exists}
    if settings.s3_endpoint:
        config["endpoint"] = settings.s3_endpoint
    if settings.s3_access_key_id:
        config["access_key_id"] = settings.s3_access_key_id
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        if settings.s3_session_token.get_secret_value():
            config["session_token"] = settings.s3_session_token.get_secret_value()
    # Plain http only for an endpoint on this machine, unless an operator opted in.
    allow_http = settings.s3_allow_http or (bool(settings.s3_endpoint) and _is_loopback(settings.s3_endpoint))
    return S3Store(bucket, prefix=prefix or None, config=config, client_options={"allow_http": allow_http})
