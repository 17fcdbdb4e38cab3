"""Imported models (docs/byom.md) as the puller stores them: each folder's files listed in a manifest with
framework onnx / xgboost / lightgbm and the contract's metadata, signed, stored and registered; and a
serving service (registry + serving in-process on 127.0.0.1:0) to deploy them on."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio

from services.core.artifacts.manifest import parse_manifest
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.signing import signature_message
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.settings import AuthSettings, ServerSettings
from services.serving.server import ServingSettings, build_serving
from tests.serving.imported.models import BUILDERS, Imported
from tests.serving.service.conftest import SUBJECT, Stub
from tests.serving.service.conftest import issuer, mesh_settings, publisher, registry  # noqa: F401  (fixtures)


@dataclass
class Published:
    model: Imported
    artifact_id: str


@pytest.fixture(scope="session")
def imported_models(tmp_path_factory) -> dict[str, Imported]:
    root = tmp_path_factory.mktemp("imported")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def _manifest(model: Imported):
    files = sorted(p.relative_to(model.folder).as_posix() for p in model.folder.rglob("*") if p.is_file())
    entries = []
    for path in files:
        digest, size = sha256_file(model.folder / path)
        entries.append({"path": path, "sha256": digest, "size": size})
    return parse_manifest({"files": entries, "framework": model.framework, "format": model.framework,
                           "metadata": model.metadata})


async def publish(publisher, model: Imported, *, name: str | None = None) -> str:  # noqa: F811
    """The puller's last steps by hand: manifest, signature over exactly the folder, store, register."""
    token = set_principal(Principal(SUBJECT, frozenset(ALL_SCOPES), "registry", "t", time.time() + 3600))
    try:
        manifest = _manifest(model)
        bundle = await asyncio.to_thread(publisher.kit.signer.sign, model.folder)
        for entry in manifest.files:
            await publisher.kit.store.put_file(model.folder / entry.path, expected_sha256=entry.sha256,
                                               lineage={"artifact_id": manifest.artifact_id, "path": entry.path})
        artifact = await publisher.client.register_artifact(
            manifest, name=name or model.name, aliases=("prod",),
            signature=signature_message(publisher.kit.signer, bundle))
    finally:
        reset_principal(token)
    assert artifact.id == manifest.artifact_id
    return artifact.id


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def published(publisher, imported_models) -> dict[str, Published]:  # noqa: F811
    return {name: Published(model, await publish(publisher, model)) for name, model in imported_models.items()}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def imported_serving(mesh_settings, registry, published):  # noqa: F811
    app = await build_serving(mesh_settings, ServerSettings(), AuthSettings(),
                              serving=ServingSettings(executor="auto", start_triton=False),
                              registry_address=registry.address)
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def imported_stub(imported_serving, issuer):  # noqa: F811
    async with grpc.aio.insecure_channel(imported_serving.address) as channel:
        yield Stub(channel, issuer.mint(SUBJECT, "serving", ALL_SCOPES))
