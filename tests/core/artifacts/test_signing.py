"""OpenSSF model signing over an artifact folder with the local EC key."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.core.artifacts.signing import ArtifactSigner
from services.core.errors import IntegrityError
from services.core.settings import ArtifactSettings


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "artifact"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights" * 50)
    (folder / "model.safetensors.sha256").write_text("ab  model.safetensors\n")
    (folder / "sub" / "config.json").write_text("{}")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return folder


@pytest.fixture
def signer(tmp_path) -> ArtifactSigner:
    return ArtifactSigner(ArtifactSettings(), tmp_path / "home")


def test_key_is_made_on_first_use_private_and_with_public_beside(signer, folder, tmp_path):
    assert not signer.private_key_path.exists()
    bundle = signer.sign(folder)
    assert signer.private_key_path == tmp_path / "home" / "keys" / "signing.pem"
    assert stat.S_IMODE(signer.private_key_path.stat().st_mode) == 0o600
    assert signer.public_key_path.name == "signing.pub.pem" and signer.public_key_path.exists()
    assert b"dsseEnvelope" in bundle
    signer.verify(folder, bundle)
    # The bundle is returned, never written into the folder it signs.
    assert sorted(p.name for p in folder.rglob("*")) == sorted(
        [".gitattributes", "config.json", "model.safetensors", "model.safetensors.sha256", "sub"])


@pytest.mark.parametrize("change, expected", [
    (lambda f: (f / "model.safetensors").write_bytes(b"x" * 350), "Hash mismatch for 'model.safetensors'"),
    (lambda f: (f / "model.safetensors.sha256").write_text("cd  model.safetensors\n"), "model.safetensors.sha256"),
    (lambda f: (f / "pytorch_model.bin").write_bytes(b"extra"), "Extra files found"),
    (lambda f: (f / "sub" / "config.json").unlink(), "Missing files"),
    # git files are signed too: model_signing's default would skip them.
    (lambda f: (f / ".gitattributes").write_text("changed"), "Hash mismatch for '.gitattributes'"),
    (lambda f: (f / ".gitignore").write_text("*"), "Extra files found"),
])
def test_any_change_to_the_folder_fails_verification(signer, folder, change, expected):
    bundle = signer.sign(folder)
    change(folder)
    with pytest.raises(IntegrityError, match="signature verification failed") as info:
        signer.verify(folder, bundle)
    assert expected in str(info.value)


def test_symlinks_are_refused(signer, folder, tmp_path):
    bundle = signer.sign(folder)
    (folder / "model.safetensors").rename(tmp_path / "elsewhere")
    (folder / "model.safetensors").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(IntegrityError, match="signature verification failed"):
        signer.verify(folder, bundle)


def test_another_key_is_refused_unless_trusted(signer, folder, tmp_path):
    signer.ensure_local_key()
    other = ArtifactSigner(ArtifactSettings(), tmp_path / "other-home")
    bundle = other.sign(folder)
    with pytest.raises(IntegrityError, match="signature verification failed.*Key mismatch"):
        signer.verify(folder, bundle)
    trusting = ArtifactSigner(ArtifactSettings(trusted_public_keys=[other.public_key_path]), tmp_path / "home")
    trusting.verify(folder, bundle)


@pytest.mark.parametrize("bundle", [b"", b"not json", b"{}", b'{"mediaType": "x", "dsseEnvelope": {}}'])
def test_garbage_bundles_are_refused(signer, folder, bundle):
    signer.sign(folder)
    with pytest.raises(IntegrityError, match="signature verification failed"):
        signer.verify(folder, bundle)


def test_a_verifier_without_any_key_refuses(folder, tmp_path):
    signer = ArtifactSigner(ArtifactSettings(), tmp_path / "empty-home")
    with pytest.raises(IntegrityError, match="no trusted public key"):
        signer.verify(folder, b"{}")
    assert not signer.private_key_path.exists(), "verifying must not mint a key"


def test_the_key_is_ec_p256(signer, folder):
    signer.sign(folder)
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(signer.private_key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
