"""The puller's /metrics after real pulls from the local hub: operation durations by outcome and the bytes
of the artifacts pulled, scraped over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from mlmesh.v1 import common_pb2, operations_pb2
from services.core.settings import ObservabilitySettings
from tests.puller.conftest import safetensors_bytes
from tests.scrape import scrape

DURATION = "mlmesh_operation_duration_seconds"


@pytest.fixture
def puller_observability():
    """The conftest's puller, with /metrics on a free port."""
    return ObservabilitySettings(metrics_port=0)


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


async def test_pushes_record_their_duration_and_bytes(stubs, puller):
    from tests.puller.test_push import SMALL, push_files

    final, _ = await stubs.finished((await push_files(stubs, "metered", {"m.onnx": SMALL})).id)
    assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error
    artifact = common_pb2.Artifact()
    final.result.Unpack(artifact)
    samples = await asyncio.to_thread(scrape, puller.host.metrics.url)
    assert samples.value(f"{DURATION}_count", kind="push", outcome="succeeded") == 1
    assert samples.value("mlmesh_operation_output_bytes_total", kind="push") == artifact.total_size
    assert samples.value("mlmesh_rpc_requests_total", method="mlmesh.v1.Puller/Push", code="OK") == 1
