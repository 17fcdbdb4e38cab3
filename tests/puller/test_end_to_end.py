"""Pull from the local hub -> WatchOperation progress -> artifact registered with lineage -> LoadHandler
loads it verified. On SQLite and PostgreSQL (the shared database holds the operations)."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from mlmesh.v1 import common_pb2, operations_pb2, registry_pb2
from services.core.artifacts.load import LoadHandler
from services.core.artifacts.manifest import parse_manifest
from services.core.artifacts.objectstore import ObjectStore
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.lineage import LineageBus
from services.core.settings import ArtifactSettings, MeshSettings
from tests.puller.conftest import safetensors_bytes, sha256, tiny_state_dict, torch_pickle_bytes

SUCCEEDED = operations_pb2.OPERATION_STATE_SUCCEEDED
CONFIG = b'{"architectures": ["Tiny"]}'


@pytest.fixture
def mesh_settings(tmp_path, database_url):
    return MeshSettings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def principal():
    token = set_principal(Principal("test-loader", frozenset(ALL_SCOPES), "serving", "t", 0.0))
    yield
    reset_principal(token)


async def _load(mesh: MeshSettings, artifact: common_pb2.Artifact, tmp_path):
    """What serving does: manifest + signature from the registry -> verified tensors."""
    settings, bus = ArtifactSettings(), LineageBus()
    store = StoreHandler(ObjectStore.from_url(mesh.object_store_url), bus)
    loader = LoadHandler(store, ArtifactSigner(settings, mesh.home), settings, tmp_path / "load-cache", bus)
    manifest = parse_manifest({
        "files": [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in artifact.manifest.files],
        "framework": artifact.manifest.framework, "format": artifact.manifest.format,
        "metadata": json_format.MessageToDict(artifact.manifest.metadata),
    })
    return await loader.load(manifest, artifact.signature.bundle, expected_id=artifact.id)


async def test_pull_watch_register_lineage_load(stubs, hub, mesh_settings, tmp_path, principal):
    weights = safetensors_bytes(5)
    files = {"config.json": CONFIG, "model.safetensors": weights, "README.md": b"# tiny"}
    commit = hub.add_commit("org/tiny", files, tags=("v1",))
    op = await stubs.pull(source="hf://org/tiny@v1", aliases=["prod"])
    assert op.kind == "pull" and op.service == "puller" and op.created_by == "test-operator"
    assert dict(op.request)["source"] == "hf://org/tiny@v1"

    final, seen = await stubs.finished(op.id)
    assert final.state == SUCCEEDED, final.error
    downloads = [o.progress for o in seen if o.progress.stage == "download"]
    assert downloads and downloads[-1].unit == "bytes" and downloads[-1].total == sum(map(len, files.values()))
    assert {o.progress.stage for o in seen} >= {"download", "register"}
    artifact = common_pb2.Artifact()
    assert final.result.Unpack(artifact)

    assert artifact.name == "org/tiny" and set(artifact.aliases) == {"org/tiny@latest", "org/tiny@prod"}
    assert artifact.source_uri == f"hf://org/tiny@{commit}"
    paths = {f.path: f.sha256 for f in artifact.manifest.files}
    assert paths == {"config.json": sha256(CONFIG), "README.md": sha256(b"# tiny"),
                     "model.safetensors": sha256(weights), "model.safetensors.sha256": paths["model.safetensors.sha256"]}
    assert artifact.signature.bundle and artifact.manifest.format == "safetensors"
    assert (await stubs.reg("GetArtifact", registry_pb2.GetArtifactRequest(ref="org/tiny@prod"))).id == artifact.id

    graph = await stubs.reg("GetLineage", registry_pb2.GetLineageRequest(
        entity=artifact.id, direction=registry_pb2.LINEAGE_DIRECTION_UPSTREAM))
    source = f"source:hf://org/tiny@{commit}"
    assert (source, f"artifact:{artifact.id}", "pull") in {(e.source, e.target, e.operation) for e in graph.edges}
    (pull,) = [e for e in graph.events if e.operation == "pull"]
    params = json_format.MessageToDict(pull.parameters)
    assert params["requested_revision"] == "v1" and params["resolved_commit"] == commit
    assert sorted(params["files"]) == sorted(files) and params["allow_patterns"] == []
    assert pull.actor == "test-operator" and pull.operation_id == op.id

    loaded = await _load(mesh_settings, artifact, tmp_path)
    assert loaded.weights_format == "safetensors"
    assert all(loaded.state_dict[k].equal(v) for k, v in tiny_state_dict(5).items())


async def test_torchhub_pull_end_to_end(stubs, mirror, service_env, mesh_settings, tmp_path, principal):
    data = torch_pickle_bytes(tiny_state_dict(9))
    mirror.files["/models/tiny.pth"] = data
    service_env["MLMESH_TORCHHUB_ALLOWLIST"] = (
        f'[{{"repo": "acme/vision", "ref": "v1", "entry": "tiny", "sha256": "{sha256(data)}", '
        '"url": "https://download.pytorch.org/models/tiny.pth", "architecture": {"builder": "acme.Tiny"}}]'
    )
    op = await stubs.pull(source="torchhub://acme/vision:v1/tiny", name="tiny-vision")
    final, _ = await stubs.finished(op.id)
    assert final.state == SUCCEEDED, final.error
    artifact = common_pb2.Artifact()
    final.result.Unpack(artifact)
    assert artifact.name == "tiny-vision" and artifact.source_uri.endswith(f"@sha256:{sha256(data)}")
    assert sorted(f.path for f in artifact.manifest.files) == ["model.safetensors", "model.safetensors.sha256"]
    assert json_format.MessageToDict(artifact.manifest.metadata)["architecture"] == {"builder": "acme.Tiny"}
    loaded = await _load(mesh_settings, artifact, tmp_path)
    assert all(loaded.state_dict[k].equal(v) for k, v in tiny_state_dict(9).items())
