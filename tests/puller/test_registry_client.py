"""RegistryClient against a real registry: typed calls, registry errors as domain errors, lineage_sink."""

from __future__ import annotations

import pytest

from services.core.artifacts.manifest import parse_manifest
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient, lineage_sink
from services.core.errors import InvalidArgument, NotFound, PermissionDenied
from services.core.lineage import LineageBus, LineageEvent
from services.core.settings import AuthSettings
from tests.puller.conftest import sha256

MANIFEST = parse_manifest({"files": [{"path": "model.safetensors", "sha256": sha256(b"w"), "size": 1}],
                           "framework": "torch", "format": "safetensors", "metadata": {"layers": [2, 1]}})


@pytest.fixture
async def client(registry, mesh_settings):
    client = RegistryClient.connect(registry.address, TokenIssuer.from_settings(mesh_settings, AuthSettings()),
                                    subject="puller")
    yield client
    await client.close()


async def test_register_get_resolve(client):
    artifact = await client.register_artifact(MANIFEST, name="tiny", aliases=["prod"], source_uri="hf://org/tiny@abc")
    assert artifact.id == MANIFEST.artifact_id and artifact.created_by == "puller"
    assert (await client.get_artifact("tiny@prod")).id == artifact.id
    assert await client.resolve("tiny") == artifact.id
    with pytest.raises(NotFound):
        await client.resolve("nothing@latest")
    with pytest.raises(InvalidArgument) as bad:
        await client.register_artifact(MANIFEST, name="tiny", aliases=["Bad Alias"])
    assert bad.value.field == "aliases[0]"


async def test_lineage_sink_records_events_with_the_callers_actor(client):
    artifact = await client.register_artifact(MANIFEST, name="tiny")
    bus = LineageBus()
    bus.subscribe(lineage_sink(client))
    event = await bus.emit(LineageEvent(operation="pull", actor="alice", inputs=["source:hf://org/tiny@abc"],
                                        outputs=[f"artifact:{artifact.id}"], parameters={"files": ["a", "b"]},
                                        service="puller", operation_id="op-1"))
    graph = await client.get_lineage(artifact.id)
    (recorded,) = [e for e in graph.events if e.operation == "pull"]
    assert (recorded.id, recorded.actor, recorded.operation_id) == (event.id, "alice", "op-1")
    assert list(recorded.parameters["files"]) == ["a", "b"]


async def test_missing_scope_is_the_registrys_answer(registry, mesh_settings):
    client = RegistryClient.connect(registry.address, TokenIssuer.from_settings(mesh_settings, AuthSettings()),
                                    subject="reader", scopes=["registry.read"])
    try:
        with pytest.raises(PermissionDenied):
            await client.register_artifact(MANIFEST, name="tiny")
    finally:
        await client.close()
