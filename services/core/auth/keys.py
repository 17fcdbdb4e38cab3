"""The mesh issuer key: an EC P-256 private key made on first run, readable only by its owner."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.core.errors import FailedPrecondition
from services.core.settings import AuthSettings, MeshSettings

log = logging.getLogger(__name__)


def issuer_key_path(mesh: MeshSettings, auth: AuthSettings) -> Path:
    """Where the issuer key lives: the configured file, else $MLMESH_HOME/keys/issuer.pem."""
    return Path(auth.issuer_key_file).expanduser() if auth.issuer_key_file else mesh.home / "keys" / "issuer.pem"


def load_or_create_issuer_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The key at `path`; made (0600, atomically) when absent. Racing creators all end with one key."""
    path = Path(path)
    if not path.exists():
        _ensure_private_dir(path.parent)
        _create(path)
    return _load(path)


def _ensure_private_dir(parent: Path) -> None:
    if parent.is_dir():
        return
    parent.mkdir(parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask; set it explicitly. Only a folder we made is changed.
    os.chmod(parent, 0o700)


def _create(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Write a complete private temp file first, then link it into place: link() fails when the
    # target exists (O_EXCL semantics), so a racing reader never sees a half-written key.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            log.info("created mesh issuer key %s", path)
        except FileExistsError:
            pass  # another process won the race; its key is the one everybody uses
    finally:
        tmp.unlink(missing_ok=True)


def _load(path: Path, attempts: int = 20) -> ec.EllipticCurvePrivateKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("issuer key %s is readable by others (mode %o); chmod 600 it", path, mode)
    for attempt in range(attempts):
        data = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(data, password=None)
            break
        except ValueError:
            # A key written by something other than _create may still be landing; give it a moment.
            if attempt == attempts - 1:
                raise FailedPrecondition(f"issuer key {path} is not a PEM private key", field="issuer_key_file")
            time.sleep(0.05)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise FailedPrecondition(f"issuer key {path} is not an EC P-256 key", field="issuer_key_file")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict:
    """The JWK of a P-256 public key; `kid` is its RFC 7638 thumbprint."""
    numbers = public_key.public_numbers()
    members = {"crv": "P-256", "kty": "EC", "x": _b64url(numbers.x.to_bytes(32, "big")),
               "y": _b64url(numbers.y.to_bytes(32, "big"))}
    # RFC 7638: required members only, sorted, no whitespace, SHA-256, base64url.
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return {**members, "kid": _b64url(hashlib.sha256(canonical).digest()), "alg": "ES256", "use": "sig"}


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_jwk(public_key)["kid"]
