"""One wiring of the artifact handlers, so every service (and the demo) builds them the same way."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.artifacts.cache import CacheHandler
from services.core.artifacts.load import LoadHandler
from services.core.artifacts.objectstore import ObjectStore
from services.core.artifacts.save import SaveHandler
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.lineage import LineageBus
from services.core.settings import ArtifactSettings, MeshSettings, MLSettings, ObjectStoreSettings


@dataclass(frozen=True)
class ArtifactToolkit:
    store: StoreHandler
    signer: ArtifactSigner
    saver: SaveHandler
    loader: LoadHandler
    cache: CacheHandler


def build_artifact_toolkit(
    mesh: MeshSettings,
    bus: LineageBus,
    *,
    service: str,
    write_scope: str,
    read_scope: str,
    artifacts: ArtifactSettings | None = None,
    object_store: ObjectStoreSettings | None = None,
    ml: MLSettings | None = None,
) -> ArtifactToolkit:
    """The handlers over the mesh's object store; `write_scope` / `read_scope` are what callers must hold."""
    artifacts = artifacts or ArtifactSettings()
    cache_root = artifacts.cache_root(mesh.home)
    store = StoreHandler(
        ObjectStore.from_url(mesh.object_store_url, s3_options=object_store), bus,
        write_scope=write_scope, read_scope=read_scope, service=service,
    )
    signer = ArtifactSigner(artifacts, mesh.home)
    saver = SaveHandler(store, signer, cache_root, bus, scope=write_scope, service=service)
    loader = LoadHandler(store, signer, artifacts, cache_root, bus, scope=read_scope, service=service)
    cache = CacheHandler(loader, ml or MLSettings(), bus, scope=read_scope, service=service)
    return ArtifactToolkit(store=store, signer=signer, saver=saver, loader=loader, cache=cache)
