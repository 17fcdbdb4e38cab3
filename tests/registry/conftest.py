"""A real registry on 127.0.0.1:0 over each database backend, with real stubs and minted tokens."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from mlmesh.v1 import common_pb2, registry_pb2_grpc
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import ArtifactSettings, AuthSettings, MeshSettings, ServerSettings
from services.registry.server import build_registry

SEED_MODELS = ("regime_classifier", "alpha_bull", "alpha_bear", "alpha_sideways", "price_forecaster", "news_sentiment")
SKILLS_DIR = Path(__file__).resolve().parents[2] / "configs" / "skills"


def manifest(seed: str, files: int = 2) -> common_pb2.Manifest:
    """A manifest of `files` distinct fake weight files, deterministic in `seed`."""
    entries = []
    for index in range(files):
        data = f"{seed}-{index}".encode()
        entries.append(
            common_pb2.ArtifactFile(
                path=f"weights/part{index}.safetensors", sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                media_type="application/vnd.safetensors",
            )
        )
    message = common_pb2.Manifest(files=entries, framework="torch", format="safetensors")
    message.metadata.update({"seed": seed, "layers": [4, 8, 1]})
    return message


def write_files(seed: str, folder: Path, files: int = 2) -> Path:
    """The bytes `manifest(seed, files)` describes, written under `folder`."""
    for index in range(files):
        path = folder / f"weights/part{index}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{seed}-{index}".encode())
    return folder


@pytest.fixture
def sign(mesh_settings, tmp_path):
    """sign(seed, files) -> a Signature by the mesh's signer over the files `manifest(seed, files)` lists."""
    signer = ArtifactSigner(ArtifactSettings(), mesh_settings.home)

    def make(seed: str, files: int = 2) -> common_pb2.Signature:
        folder = write_files(seed, tmp_path / "signed" / seed, files)
        paths = [f.path for f in manifest(seed, files).files]
        return signature_message(signer, signer.sign_files(folder, paths))

    make.signer = signer
    return make


@pytest.fixture
def mesh_settings(tmp_path, database_url) -> MeshSettings:
    return MeshSettings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def issuer(mesh_settings) -> TokenIssuer:
    return TokenIssuer.from_settings(mesh_settings, AuthSettings())


@pytest.fixture
async def registry(mesh_settings):
    app = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    port = await app.start("127.0.0.1", 0)
    app.address = f"127.0.0.1:{port}"
    yield app
    await app.stop(0)


@pytest.fixture
def operator_metadata(issuer):
    token = issuer.mint("test-operator", "registry", ALL_SCOPES)
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def channel(registry):
    async with grpc.aio.insecure_channel(registry.address) as chan:
        yield chan


@pytest.fixture
def stub(channel, operator_metadata):
    """A Registry stub whose every call carries the operator token."""
    raw = registry_pb2_grpc.RegistryStub(channel)

    class Authed:
        def __getattr__(self, name):
            method = getattr(raw, name)

            def call(request, **kwargs):
                kwargs.setdefault("metadata", operator_metadata)
                return method(request, **kwargs)

            return call

    return Authed()
