"""OpenSSF model signing (`model_signing`) over a materialised artifact folder.

What a signature covers: every regular file in the folder, by path and SHA-256, and nothing else.
That is exactly the manifest's files, `.sha256` sidecars included. model_signing by default skips
git files (.gitattributes, .gitignore, .git/, .github/); that is turned off on both sides, so a pulled
repo's `.gitattributes` is signed like any other file and a file dropped into a cached folder (of any
name) makes verification fail with "Extra files found". `sign_files` / `verify_files` cover exactly a
list of paths instead (a compiled artifact's record lists its files; its entry folder may hold others).
The bundle itself never lives in the folder: `sign` returns its bytes and `verify` takes them, so it
cannot sign or invalidate itself. Manifest metadata is bound by the artifact id (the manifest's content
hash), not by the signature; a compiled record's parameters likewise by its content id.

Default mode: a local EC P-256 key at $MLMESH_HOME/keys/signing.pem (made on first use, 0600) with its
public key beside it (signing.pub.pem); other signers' public keys can be trusted through settings.
sigstore keyless signing is a setting; it needs the network and an OIDC identity.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives import serialization

from services.core.auth.keys import load_or_create_issuer_key
from services.core.errors import FailedPrecondition, IntegrityError
from services.core.settings import ArtifactSettings

log = logging.getLogger(__name__)


def public_key_path(private_key_path: Path) -> Path:
    return private_key_path.with_name(private_key_path.name.removesuffix(".pem") + ".pub.pem")


class ArtifactSigner:
    """Signs and verifies artifact folders. Blocking (it hashes every file): call it from a worker thread."""

    def __init__(self, settings: ArtifactSettings, home: Path) -> None:
        self._settings = settings
        self.private_key_path = settings.signing_key_path(Path(home))
        self.public_key_path = public_key_path(self.private_key_path)

    def sign(self, folder: Path) -> bytes:
        """The signature bundle (Sigstore bundle JSON) over every file in `folder`."""
        from model_signing import signing  # imported on use: it is slow to import and pulls in OpenSSL

        config = signing.Config().set_hashing_config(self._hashing())
        if self._settings.signing_mode == "sigstore":
            config.use_sigstore_signer(use_staging=self._settings.sigstore_use_staging)
        else:
            self.ensure_local_key()
            config.use_elliptic_key_signer(private_key=self.private_key_path)
        with tempfile.TemporaryDirectory(prefix="mlmesh-sign-") as tmp:
            bundle_path = Path(tmp) / "bundle.sig"
            config.sign(Path(folder), bundle_path)
            return bundle_path.read_bytes()

    def verify(self, folder: Path, bundle: bytes) -> None:
        """IntegrityError("signature verification failed ...") unless `bundle` signs exactly `folder`'s files."""
        from model_signing import verifying

        folder = Path(folder)
        if not bundle:
            raise IntegrityError(f"signature verification failed for {folder.name}: no signature bundle")
        configs = []
        if self._settings.signing_mode == "sigstore":
            configs.append(verifying.Config().use_sigstore_verifier(
                identity=self._settings.sigstore_identity,
                oidc_issuer=self._settings.sigstore_oidc_issuer,
                use_staging=self._settings.sigstore_use_staging,
            ))
        else:
            for key in self._trusted_keys():
                configs.append(verifying.Config().use_elliptic_key_verifier(public_key=key))
        if not configs:
            raise IntegrityError(f"signature verification failed for {folder.name}: no trusted public key")
        problems = []
        with tempfile.TemporaryDirectory(prefix="mlmesh-verify-") as tmp:
            bundle_path = Path(tmp) / "bundle.sig"
            bundle_path.write_bytes(bundle)
            for config in configs:
                try:
                    config.set_hashing_config(self._hashing()).verify(folder, bundle_path)
                    return
                except Exception as exc:  # noqa: BLE001 - any failure (parse, key, digest) means "not verified"
                    problems.append(f"{type(exc).__name__}: {exc}")
        raise IntegrityError(f"signature verification failed for {folder.name}: {'; '.join(problems)}")

    def sign_files(self, folder: Path, paths: Iterable[str]) -> bytes:
        """The bundle over exactly `paths` (relative, "/"-separated) of `folder`, whatever else it holds."""
        with file_view(folder, paths) as view:
            return self.sign(view)

    def verify_files(self, folder: Path, paths: Iterable[str], bundle: bytes) -> None:
        """IntegrityError unless `bundle` signs exactly `paths` of `folder` (other files there are not looked at)."""
        with file_view(folder, paths) as view:
            self.verify(view, bundle)

    def ensure_local_key(self) -> None:
        """The local signing key (0600) and its public key beside it, made when absent."""
        key = load_or_create_issuer_key(self.private_key_path)
        if self.public_key_path.exists():
            return
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tmp = self.public_key_path.with_name(f".{self.public_key_path.name}.{secrets.token_hex(6)}.tmp")
        tmp.write_bytes(pem)
        os.replace(tmp, self.public_key_path)

    def _trusted_keys(self) -> list[Path]:
        if not self.public_key_path.exists() and self.private_key_path.exists():
            self.ensure_local_key()
        keys = [self.public_key_path] if self.public_key_path.exists() else []
        for extra in self._settings.trusted_public_keys:
            path = Path(extra).expanduser()
            if not path.is_file():
                raise FailedPrecondition(f"trusted public key {path} does not exist", field="trusted_public_keys")
            keys.append(path)
        return keys

    @staticmethod
    def _hashing():
        from model_signing import hashing

        # Sign every file: no git-path exemptions (see the module docstring).
        return hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)


@contextmanager
def file_view(folder: Path, paths: Iterable[str]) -> Iterator[Path]:
    """A temporary folder beside `folder` holding exactly `paths` of it (hard links; copies where linking
    fails), so a signature covers a record's listed files and no others (a compiled entry's folder may hold
    more). A path that is absolute, climbs out, or is not a regular file there is an IntegrityError."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix=".mlmesh-view-", dir=folder.parent) as tmp:
        view = Path(tmp) / folder.name
        view.mkdir()
        for path in paths:
            relative = PurePosixPath(path)
            if relative.is_absolute() or not relative.parts or ".." in relative.parts:
                raise IntegrityError(f"{path!r} is not a relative path inside {folder.name}")
            source = folder.joinpath(*relative.parts)
            if source.is_symlink() or not source.is_file():
                raise IntegrityError(f"{path} of {folder.name} is missing or not a regular file")
            target = view.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        yield view


BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def signature_message(signer: ArtifactSigner, bundle: bytes) -> "common_pb2.Signature":
    """The registry's Signature for `bundle`; the key id names the local signing key when there is one."""
    from mlmesh.v1 import common_pb2

    return common_pb2.Signature(media_type=BUNDLE_MEDIA_TYPE, bundle=bundle, key_id=_key_id(signer))


def _key_id(signer: ArtifactSigner) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from services.core.auth.keys import key_id

    try:
        return key_id(load_pem_public_key(signer.public_key_path.read_bytes()))
    except (OSError, ValueError, TypeError, AttributeError):
        return ""  # sigstore mode: the identity is in the bundle
