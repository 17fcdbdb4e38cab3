"""Fixtures of the puller tests: a local hub, a local TorchHub mirror, tiny real checkpoints, and
(for the service tests) a real registry plus the puller in-process, both on 127.0.0.1:0."""

from __future__ import annotations

import hashlib
import io

import grpc
import pytest
import torch
from safetensors.torch import save as safetensors_save

from mlmesh.v1 import operations_pb2, operations_pb2_grpc, puller_pb2, puller_pb2_grpc, registry_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings, PullerSettings, ServerSettings
from services.puller.adapters.huggingface import HuggingFaceAdapter
from services.puller.adapters.torchhub import TorchHubAdapter
from services.puller.credentials import CredentialResolver
from services.puller.server import build_puller
from services.registry.server import build_registry
from tests.puller.hub import LocalHub
from tests.puller.mirror import WeightsMirror


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"linear.weight": torch.randn(2, 4, generator=generator), "linear.bias": torch.randn(2, generator=generator)}


def safetensors_bytes(seed: int = 0) -> bytes:
    return safetensors_save(tiny_state_dict(seed))


def torch_pickle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Canary:
    """Unpickling this creates the canary file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub():
    server = LocalHub().start()
    yield server
    server.stop()


@pytest.fixture
def mirror():
    server = WeightsMirror().start()
    yield server
    server.stop()


@pytest.fixture
def resolver(tmp_path) -> CredentialResolver:
    """Credentials from tmp_path only: a real HF_TOKEN in the environment must not leak into tests."""
    return CredentialResolver(tmp_path / "credentials", environ={})


@pytest.fixture
def make_hf(hub, tmp_path, resolver):
    def make(*, offline: bool = False, credentials: CredentialResolver | None = None, **kwargs) -> HuggingFaceAdapter:
        return HuggingFaceAdapter(cache_dir=tmp_path / "cache" / "hf", credentials=credentials or resolver,
                                  endpoint=hub.url, offline=offline, **kwargs)

    return make


@pytest.fixture
def make_torchhub(mirror, tmp_path, resolver):
    def make(*, offline: bool = False, credentials: CredentialResolver | None = None, **kwargs) -> TorchHubAdapter:
        return TorchHubAdapter(cache_dir=tmp_path / "cache" / "torchhub", credentials=credentials or resolver,
                               mirror_url=mirror.url, offline=offline, **kwargs)

    return make


# ---- the service: a real registry and the puller in-process, both on 127.0.0.1:0 ----

TOKEN_ENV = "MLMESH_HUGGINGFACE_API_TOKEN"


@pytest.fixture
def mesh_settings(tmp_path):
    """SQLite by default; the end-to-end module overrides this with the sqlite/postgres `database_url`."""
    return MeshSettings(home=tmp_path / "home", database_url=f"sqlite+aiosqlite:///{tmp_path / 'mesh.db'}")


@pytest.fixture
def service_env() -> dict[str, str]:
    """The environment the puller's CredentialResolver sees; tests add tokens and allow-lists here."""
    return {}


@pytest.fixture
async def registry(mesh_settings):
    app = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest.fixture
def puller_observability():
    """The puller's ObservabilitySettings; None (the defaults) unless a test module overrides this fixture."""
    return None


@pytest.fixture
async def puller(mesh_settings, registry, hub, mirror, service_env, puller_observability):
    app = await build_puller(
        mesh_settings, ServerSettings(), AuthSettings(),
        puller=PullerSettings(hf_endpoint=hub.url, torchhub_mirror_url=mirror.url),
        credentials=CredentialResolver(mesh_settings.home / "credentials", environ=service_env),
        registry_address=registry.address, cancel_poll_s=0.05, observability=puller_observability,
    )
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


class Stubs:
    """Stubs of the puller (Puller, Operations) and the registry, each call carrying an operator token."""

    def __init__(self, puller_channel, registry_channel, issuer: TokenIssuer) -> None:
        self._puller = {"authorization": f"Bearer {issuer.mint('test-operator', 'puller', ALL_SCOPES)}"}
        self._registry = {"authorization": f"Bearer {issuer.mint('test-operator', 'registry', ALL_SCOPES)}"}
        self.puller = puller_pb2_grpc.PullerStub(puller_channel)
        self.operations = operations_pb2_grpc.OperationsStub(puller_channel)
        self.registry = registry_pb2_grpc.RegistryStub(registry_channel)

    async def pull(self, **fields):
        return await self.puller.Pull(puller_pb2.PullRequest(**fields), metadata=tuple(self._puller.items()))

    def watch(self, op_id: str):
        return self.operations.WatchOperation(operations_pb2.WatchOperationRequest(id=op_id),
                                              metadata=tuple(self._puller.items()))

    async def finished(self, op_id: str) -> tuple[operations_pb2.Operation, list[operations_pb2.Operation]]:
        seen = [op async for op in self.watch(op_id)]
        return seen[-1], seen

    async def cancel(self, op_id: str):
        return await self.operations.CancelOperation(operations_pb2.CancelOperationRequest(id=op_id),
                                                     metadata=tuple(self._puller.items()))

    async def list_operations(self):
        return await self.operations.ListOperations(operations_pb2.ListOperationsRequest(),
                                                    metadata=tuple(self._puller.items()))

    async def reg(self, method: str, request):
        return await getattr(self.registry, method)(request, metadata=tuple(self._registry.items()))


@pytest.fixture
async def stubs(puller, registry, mesh_settings):
    async with grpc.aio.insecure_channel(puller.address) as pc, grpc.aio.insecure_channel(registry.address) as rc:
        yield Stubs(pc, rc, TokenIssuer.from_settings(mesh_settings, AuthSettings()))


def stored_objects(mesh: MeshSettings) -> list[str]:
    root = mesh.home / "objects" / "sha256"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []
