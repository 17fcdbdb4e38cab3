"""A real registry and the serving service in-process on 127.0.0.1:0, sharing one event loop for the whole
test session (tests mark themselves `loop_scope="session"`), with the demo's models trained briefly,
saved through the SaveHandler (signed), registered with a `prod` alias, and stubs that carry tokens."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
import torch

from mlmesh.v1 import common_pb2, serving_pb2, serving_pb2_grpc
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import ArtifactToolkit, build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.mesh.demo import models as demo
from services.registry.server import build_registry
from services.serving.interfaces.backends.factory import torch_backend
from services.serving.loading.metadata import serving_metadata
from services.serving.server import ServingSettings, build_serving

SUBJECT = "test-operator"
MODELS = ("regime_classifier", "alpha_bull", "price_forecaster", "news_sentiment")


@dataclass
class Registered:
    name: str
    artifact_id: str
    trained: demo.Trained

    def backend(self, interface: str | None = None):
        """The same weights as a local backend: what a served answer must equal."""
        metadata = serving_metadata(self.trained.metadata)
        return torch_backend(interface or metadata["interface"], artifact_id=self.artifact_id, metadata=metadata,
                             state_dict=self.trained.module.state_dict())


def _train() -> dict[str, demo.Trained]:
    quiet = lambda n: None  # noqa: E731
    builders = {
        "regime_classifier": lambda g: demo.regime_classifier(g, 30, quiet),
        "alpha_bull": lambda g: demo.alpha_model("bull", g, 30, quiet),
        "price_forecaster": lambda g: demo.price_forecaster(g, 15, quiet),
        "news_sentiment": lambda g: demo.news_sentiment(g, 40, quiet),
    }
    trained = {}
    with torch.random.fork_rng():
        for offset, name in enumerate(MODELS):
            torch.manual_seed(100 + offset)
            trained[name] = builders[name](torch.Generator().manual_seed(100 + offset))
    return trained


@pytest.fixture(scope="session")
def mesh_settings(tmp_path_factory) -> MeshSettings:
    root = tmp_path_factory.mktemp("serving-mesh")
    return MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mesh.db'}")


@pytest.fixture(scope="session")
def issuer(mesh_settings) -> TokenIssuer:
    mesh_settings.ensure_home()
    return TokenIssuer.from_settings(mesh_settings, AuthSettings())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def registry(mesh_settings):
    app = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


class Publisher:
    """Saves (signed) and registers models as the operator, as the demo seed does."""

    def __init__(self, mesh: MeshSettings, issuer: TokenIssuer, registry_address: str) -> None:
        self.kit: ArtifactToolkit = build_artifact_toolkit(mesh, LineageBus(), service="test",
                                                           write_scope=REGISTRY_WRITE, read_scope=REGISTRY_WRITE)
        self.client = RegistryClient.connect(registry_address, issuer, subject=SUBJECT, scopes=ALL_SCOPES)

    async def publish(self, trained: demo.Trained, *, name: str | None = None, signed: bool = True):
        token = set_principal(Principal(SUBJECT, frozenset(ALL_SCOPES), "registry", "t", time.time() + 3600))
        try:
            meta = dict(trained.metadata)
            saved = await self.kit.saver.save(
                trained.module.state_dict(), architecture=meta.pop("architecture"),
                training_stats=meta.pop("training_stats", None), feature_names=meta.pop("feature_names", None),
                metadata=meta)
            signature = signature_message(self.kit.signer, saved.signature) if signed else None
            artifact = await self.client.register_artifact(saved.manifest, name=name or trained.name,
                                                           aliases=("prod",), signature=signature)
        finally:
            reset_principal(token)
        return saved, artifact


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def publisher(mesh_settings, issuer, registry):
    pub = Publisher(mesh_settings, issuer, registry.address)
    yield pub
    await pub.client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def models(publisher) -> dict[str, Registered]:
    out = {}
    for name, trained in _train().items():
        saved, artifact = await publisher.publish(trained)
        assert artifact.id == saved.artifact_id
        out[name] = Registered(name, artifact.id, trained)
    return out


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def serving(mesh_settings, registry, models):
    app = await build_serving(mesh_settings, ServerSettings(), AuthSettings(),
                              serving=ServingSettings(executor="auto", start_triton=False),
                              registry_address=registry.address)
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


class Stub:
    """The Serving stub; every call carries an operator token for audience "serving"."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.raw = serving_pb2_grpc.ServingStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name):
        method = getattr(self.raw, name)

        def call(request, **kwargs):
            kwargs.setdefault("metadata", self.metadata)
            return method(request, **kwargs)

        return call

    async def deploy(self, model: str, *, interface: int = 0, session_id: str | None = None, **fields):
        request = serving_pb2.DeployRequest(model=model, interface=interface,
                                            session_id=session_id or f"t-{uuid.uuid4().hex[:8]}", **fields)
        return await self.Deploy(request)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stub(serving, issuer):
    async with grpc.aio.insecure_channel(serving.address) as channel:
        yield Stub(channel, issuer.mint(SUBJECT, "serving", ALL_SCOPES))


def error_field(exc: grpc.aio.AioRpcError) -> str | None:
    return dict(exc.trailing_metadata() or ()).get("mlmesh-error-field")


KINDS = {"predictor": common_pb2.INTERFACE_KIND_PREDICTOR, "classifier": common_pb2.INTERFACE_KIND_CLASSIFIER,
         "forecaster": common_pb2.INTERFACE_KIND_FORECASTER, "segmenter": common_pb2.INTERFACE_KIND_SEGMENTER,
         "analyzer": common_pb2.INTERFACE_KIND_ANALYZER}
