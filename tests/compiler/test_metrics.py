"""The compiler's /metrics after a real compile: the operation's duration and the compiled bytes, scraped
over HTTP from an in-process compiler with metrics on a free port."""

from __future__ import annotations

import asyncio

import pytest

from mlmesh.v1 import common_pb2, compiler_pb2, operations_pb2
from services.core.settings import ObservabilitySettings
from tests.compiler.test_service import running_mesh, saved_model
from tests.scrape import scrape


@pytest.fixture
async def metered(tmp_path):
    """(the test_service Mesh, the compiler app) with the compiler's /metrics on a free port."""
    async with running_mesh(tmp_path, ObservabilitySettings(metrics_port=0)) as running:
        yield running


async def test_a_compile_records_its_duration_and_the_compiled_bytes(metered):
    mesh, compiler = metered
    await saved_model(mesh, "lstm")
    op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(artifact="test/lstm", target="onnx"),
                                     metadata=mesh.metadata)
    final = (await mesh.watch(op.id))[-1]
    assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error
    compiled = common_pb2.CompiledArtifact()
    final.result.Unpack(compiled)

    samples = await asyncio.to_thread(scrape, compiler.host.metrics.url)
    assert samples.value("mlmesh_operation_duration_seconds_count", kind="compile", outcome="succeeded") == 1
    assert samples.value("mlmesh_operation_duration_seconds_sum", kind="compile") > 0
    assert compiled.size > 0
    assert samples.value("mlmesh_operation_output_bytes_total", kind="compile") == compiled.size
    assert samples.value("mlmesh_rpc_requests_total", method="mlmesh.v1.Compiler/Compile", code="OK") == 1
