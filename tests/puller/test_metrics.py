"""The puller's /metrics after real pulls from the local hub: operation durations by outcome and the bytes
of the artifacts pulled, scraped over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from mlmesh.v1 import common_pb2, operations_pb2
from services.core.settings import AuthSettings, ObservabilitySettings, PullerSettings, ServerSettings
from services.puller.credentials import CredentialResolver
from services.puller.server import build_puller
from tests.puller.conftest import safetensors_bytes
from tests.scrape import scrape

DURATION = "mlmesh_operation_duration_seconds"


@pytest.fixture
async def puller(mesh_settings, registry, hub, mirror, service_env):
    """The conftest's puller, with /metrics on a free port."""
    app = await build_puller(
        mesh_settings, ServerSettings(), AuthSettings(),
        puller=PullerSettings(hf_endpoint=hub.url, torchhub_mirror_url=mirror.url),
        credentials=CredentialResolver(mesh_settings.home / "credentials", environ=service_env),
        registry_address=registry.address, cancel_poll_s=0.05, observability=ObservabilitySettings(metrics_port=0),
    )
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


async def test_pulls_record_their_duration_and_bytes(stubs, hub, puller):
    hub.add_commit("org/tiny", {"config.json": b"{}", "model.safetensors": safetensors_bytes(3)})
    final, _ = await stubs.finished((await stubs.pull(source="hf://org/tiny")).id)
    assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error
    artifact = common_pb2.Artifact()
    final.result.Unpack(artifact)
    failed, _ = await stubs.finished((await stubs.pull(source="hf://org/missing")).id)
    assert failed.state == operations_pb2.OPERATION_STATE_FAILED

    samples = await asyncio.to_thread(scrape, puller.host.metrics.url)
    assert samples.value(f"{DURATION}_count", kind="pull", outcome="succeeded") == 1
    assert samples.value(f"{DURATION}_count", kind="pull", outcome="failed") == 1
    assert samples.value(f"{DURATION}_sum", kind="pull") > 0
    assert artifact.total_size > 0
    assert samples.value("mlmesh_operation_output_bytes_total", kind="pull") == artifact.total_size
    assert samples.value("mlmesh_rpc_requests_total", method="mlmesh.v1.Puller/Pull", code="OK") == 2
