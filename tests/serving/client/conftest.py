"""A real registry and serving service in-process (as in tests/serving/service, without its demo-model
training), the small test models saved signed and registered, and a typed ServingClient with a mesh
token. The compiled outputs and the tiny BERT come from tests/serving/backends (built once a run)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import pytest
import pytest_asyncio

from services.core.artifacts.signing import signature_message
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.serving import ServingClient
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.registry.server import build_registry
from services.serving.server import ServingSettings, build_serving
from tests.serving.backends.conftest import compile_model, compiled_root, tiny_bert  # noqa: F401
from tests.serving.service.conftest import SUBJECT, Publisher

# Package scope: this package's registry and serving stop when its tests are done (the session loop is shared).
SCOPE = {"scope": "package", "loop_scope": "session"}


@contextmanager
def operator():
    """The operator's principal, as the gRPC interceptor would set it, for handlers called directly."""
    token = set_principal(Principal(SUBJECT, frozenset(ALL_SCOPES), "registry", "t", time.time() + 3600))
    try:
        yield
    finally:
        reset_principal(token)


async def publish(publisher: Publisher, name: str, metadata: Mapping[str, Any], state_dict: Mapping[str, Any]):
    """Saves (signed) and registers a torch model under `name` with the alias `prod`."""
    meta = dict(metadata)
    with operator():
        saved = await publisher.kit.saver.save(state_dict, architecture=meta.pop("architecture"), metadata=meta)
    return await publisher.client.register_artifact(saved.manifest, name=name, aliases=("prod",),
                                                    signature=signature_message(publisher.kit.signer, saved.signature))


@pytest.fixture(scope="package")
def mesh_settings(tmp_path_factory) -> MeshSettings:
    root = tmp_path_factory.mktemp("client-mesh")
    settings = MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mesh.db'}")
    settings.ensure_home()
    return settings


@pytest.fixture(scope="package")
def issuer(mesh_settings) -> TokenIssuer:
    return TokenIssuer.from_settings(mesh_settings, AuthSettings())


@pytest_asyncio.fixture(**SCOPE)
async def registry(mesh_settings):
    app = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest_asyncio.fixture(**SCOPE)
async def publisher(mesh_settings, issuer, registry):
    pub = Publisher(mesh_settings, issuer, registry.address)
    yield pub
    await pub.client.close()


@pytest_asyncio.fixture(**SCOPE)
async def serving(mesh_settings, registry):
    app = await build_serving(mesh_settings, ServerSettings(), AuthSettings(),
                              serving=ServingSettings(executor="auto", start_triton=False),
                              registry_address=registry.address)
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest_asyncio.fixture(**SCOPE)
async def client(serving, issuer):
    serving_client = ServingClient.connect(serving.address, issuer, subject=SUBJECT)
    yield serving_client
    await serving_client.close()


@pytest_asyncio.fixture(**SCOPE)
async def published(publisher, alpha_predictor, regime_classifier, price_forecaster, news_sentiment):
    """name -> registered artifact id of the small torch models of tests/serving/conftest.py."""
    models = {"alpha": alpha_predictor, "regime": regime_classifier, "forecaster": price_forecaster,
              "news": news_sentiment}
    return {name: (await publish(publisher, f"client-{name}", *model)).id for name, model in models.items()}

