"""Artifact handler fixtures: a caller with every scope, a lineage recorder, both object store backends
(a local folder and a real S3 API server on loopback), and a kit of wired handlers."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from services.core.artifacts.cache import CacheHandler
from services.core.artifacts.load import LoadHandler
from services.core.artifacts.objectstore import ObjectStore
from services.core.artifacts.save import SaveHandler
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.lineage import LineageBus, LineageEvent
from services.core.settings import ArtifactSettings, MLSettings, ObjectStoreSettings

MIN_CHUNK = 5 * 1024 * 1024


def principal(scopes=ALL_SCOPES, subject: str = "test-operator") -> Principal:
    return Principal(subject=subject, scopes=frozenset(scopes), audience="puller", token_id=secrets.token_hex(4),
                     expires_at=time.time() + 3600)


@pytest.fixture(autouse=True)
def caller():
    token = set_principal(principal())
    yield
    reset_principal(token)


class Recorder:
    """A LineageBus sink that keeps what it saw."""

    def __init__(self) -> None:
        self.events: list[LineageEvent] = []

    async def __call__(self, event: LineageEvent) -> None:
        self.events.append(event)

    def ops(self) -> list[str]:
        return [e.operation for e in self.events]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def bus(recorder) -> LineageBus:
    bus = LineageBus()
    bus.subscribe(recorder)
    return bus


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_settings(endpoint: str) -> ObjectStoreSettings:
    return ObjectStoreSettings(s3_endpoint=endpoint, s3_access_key_id="testing", s3_secret_access_key="testing",
                               upload_chunk_bytes=MIN_CHUNK)


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"mlmesh-{secrets.token_hex(6)}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=name)
    return name


def local_store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.from_url(str(tmp_path / "objects"), s3_options=ObjectStoreSettings(upload_chunk_bytes=MIN_CHUNK))


@pytest.fixture(params=["local", "s3"])
def object_store(request, tmp_path) -> ObjectStore:
    """The same tests run against a local folder and a real S3 API server (moto) on loopback."""
    if request.param == "local":
        return local_store(tmp_path)
    endpoint = request.getfixturevalue("s3_endpoint")
    return ObjectStore.from_url(f"s3://{new_bucket(endpoint)}/mesh", s3_options=s3_settings(endpoint))


@dataclass
class Kit:
    home: Path
    settings: ArtifactSettings
    store: StoreHandler
    signer: ArtifactSigner
    saver: SaveHandler
    loader: LoadHandler
    bus: LineageBus
    recorder: Recorder

    @property
    def cache_root(self) -> Path:
        return self.settings.cache_root(self.home)

    def fresh_loader(self, **overrides) -> LoadHandler:
        """A loader with other settings (e.g. a pickle allow-list) over the same store and cache folder."""
        settings = self.settings.model_copy(update=overrides)
        return LoadHandler(self.store, ArtifactSigner(settings, self.home), settings, self.cache_root, self.bus)

    def cache(self, max_bytes: int = 1 << 30, max_entries: int = 8, loader: LoadHandler | None = None) -> CacheHandler:
        ml = MLSettings(ml_cache_max_bytes=max_bytes, ml_cache_max_entries=max_entries)
        return CacheHandler(loader or self.loader, ml, self.bus)


def make_kit(home: Path, object_store: ObjectStore, bus: LineageBus, recorder: Recorder) -> Kit:
    settings = ArtifactSettings()
    store = StoreHandler(object_store, bus, service="test")
    signer = ArtifactSigner(settings, home)
    cache_root = settings.cache_root(home)
    saver = SaveHandler(store, signer, cache_root, bus, service="test")
    loader = LoadHandler(store, signer, settings, cache_root, bus, service="test")
    return Kit(home, settings, store, signer, saver, loader, bus, recorder)


@pytest.fixture
def kit(request, tmp_path, bus, recorder) -> Kit:
    """Handlers over a local store, or over S3 with `@pytest.mark.parametrize("kit", ["s3"], indirect=True)`."""
    if getattr(request, "param", "local") == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        store = ObjectStore.from_url(f"s3://{new_bucket(endpoint)}/mesh", s3_options=s3_settings(endpoint))
    else:
        store = local_store(tmp_path)
    return make_kit(tmp_path / "home", store, bus, recorder)


def state_dict(seed: int = 0, width: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(width, 4, generator=generator),
        "layer.bias": torch.randn(width, generator=generator),
        "head.weight": torch.randn(1, width, generator=generator),
    }


async def publish_folder(kit: Kit, folder: Path, signer: ArtifactSigner | None = None):
    """Hand-craft an artifact the way a (possibly careless) producer would: manifest every file in
    `folder`, sign it with the trusted key, and put every file into the store. Returns (manifest, bundle)."""
    from services.core.artifacts.manifest import parse_manifest
    from services.core.artifacts.objectstore import sha256_file

    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest, size = sha256_file(path)
        files.append({"path": path.relative_to(folder).as_posix(), "sha256": digest, "size": size})
        await kit.store.put_file(path)
    manifest = parse_manifest({"files": files, "framework": "torch", "format": "crafted"})
    return manifest, (signer or kit.signer).sign(folder)
