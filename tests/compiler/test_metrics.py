"""The compiler's /metrics after a real compile: the operation's duration and the compiled bytes, scraped
over HTTP from an in-process compiler with metrics on a free port."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from mlmesh.v1 import common_pb2, compiler_pb2, compiler_pb2_grpc, operations_pb2, operations_pb2_grpc
from mlmesh.v1 import registry_pb2_grpc
from services.compiler.server import build_compiler
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings, ObservabilitySettings, ServerSettings
from services.registry.server import build_registry
from tests.compiler.test_service import Mesh, saved_model
from tests.scrape import scrape


@pytest.fixture
async def metered(tmp_path):
    """(the test_service Mesh, the compiler app) with the compiler's /metrics on a free port."""
    settings = MeshSettings(home=tmp_path / "home")
    registry = await build_registry(settings, ServerSettings(), AuthSettings())
    registry_port = await registry.start("127.0.0.1", 0)
    compiler = await build_compiler(settings, ServerSettings(), AuthSettings(),
                                    registry_address=f"127.0.0.1:{registry_port}", cancel_poll_s=0.05,
                                    observability=ObservabilitySettings(metrics_port=0))
    compiler_port = await compiler.start("127.0.0.1", 0)
    issuer = TokenIssuer.from_settings(settings, AuthSettings())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{compiler_port}")
    registry_channel = grpc.aio.insecure_channel(f"127.0.0.1:{registry_port}")
    try:
        yield Mesh(settings, compiler_pb2_grpc.CompilerStub(channel), operations_pb2_grpc.OperationsStub(channel),
                   registry_pb2_grpc.RegistryStub(registry_channel),
                   (("authorization", f"Bearer {issuer.mint('test-operator', 'compiler', ALL_SCOPES)}"),),
                   (("authorization", f"Bearer {issuer.mint('test-operator', 'registry', ALL_SCOPES)}"),),
                   tmp_path / "save-cache"), compiler
    finally:
        await channel.close()
        await registry_channel.close()
        await compiler.stop(0)
        await registry.stop(0)


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
