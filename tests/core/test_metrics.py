"""RPC metrics of ServiceHost: a real in-process grpc.aio server with /metrics on a free port, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.errors import FailedPrecondition
from services.core.grpc.server import ServiceHost
from services.core.observability.metrics import ServiceMetrics, metrics_port_for
from services.core.settings import ObservabilitySettings, ServerSettings
from services.core.topology import ServiceEndpoint
from tests.core.test_server import OPS, SCOPES, FakeOperations
from tests.scrape import scrape

GET = "mlmesh.v1.Operations/GetOperation"
WATCH = "mlmesh.v1.Operations/WatchOperation"
REQUESTS = "mlmesh_rpc_requests_total"
DURATION = "mlmesh_rpc_duration_seconds"


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def served(key):
    """A host with metrics on a free port; yields (host, channel, token)."""
    metrics = ServiceMetrics.build("test", ObservabilitySettings(metrics_port=0), None)
    verifier = TokenVerifier(key.public_key(), "mlmesh", "registry", leeway_s=5)
    host = ServiceHost("test", ServerSettings(), verifier, SCOPES, metrics=metrics)
    host.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(FakeOperations(), s), [OPS])
    await host.start("127.0.0.1", 0)
    token = TokenIssuer(key, "mlmesh", 600).mint("svc", "registry", ["operations.read"])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            yield host, channel, token
    finally:
        await host.stop(0)


async def _scrape(host: ServiceHost):
    return await asyncio.to_thread(scrape, host.metrics.url)


async def _get(channel, op_id: str, token: str | None):
    stub = operations_pb2_grpc.OperationsStub(channel)
    metadata = [("authorization", f"Bearer {token}")] if token else None
    try:
        await stub.GetOperation(operations_pb2.GetOperationRequest(id=op_id), metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_calls_are_counted_by_method_and_status_code_and_timed(served):
    host, channel, token = served
    assert host.metrics.url == f"http://127.0.0.1:{host.metrics.port}/metrics"
    before = await _scrape(host)
    assert before.value(REQUESTS, method=GET) == 0
    assert before.value("mlmesh_service_info", service="test") == 1
    assert "process_cpu_seconds_total" in before.names()

    codes = [await _get(channel, op, tok) for op, tok in
             [("ok", token), ("ok", token), ("slow", token), ("invalid", token), ("boom", token), ("ok", None)]]
    assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL,
                                                 grpc.StatusCode.UNAUTHENTICATED]
    after = await _scrape(host)
    assert after.value(REQUESTS, method=GET, code="OK") == 3
    assert after.value(REQUESTS, method=GET, code="INVALID_ARGUMENT") == 1
    assert after.value(REQUESTS, method=GET, code="INTERNAL") == 1
    assert after.value(REQUESTS, method=GET, code="UNAUTHENTICATED") == 1
    assert after.value(f"{DURATION}_count", method=GET) == 6
    # The "slow" call sleeps 0.5 s: it lands above the 0.25 s bucket, the fast ones below it.
    assert after.bucket(DURATION, "0.25", method=GET) == 5
    assert after.bucket(DURATION, "+Inf", method=GET) == 6
    assert after.value(f"{DURATION}_sum", method=GET) >= 0.5


async def test_streaming_calls_and_errors_after_items_are_counted(served):
    host, channel, token = served
    stub = operations_pb2_grpc.OperationsStub(channel)
    md = [("authorization", f"Bearer {token}")]
    items = [op.id async for op in stub.WatchOperation(operations_pb2.GetOperationRequest(id="x"), metadata=md)]
    assert items == ["x-0", "x-1"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.WatchOperation(operations_pb2.GetOperationRequest(id="invalid"), metadata=md):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    samples = await _scrape(host)
    assert samples.value(REQUESTS, method=WATCH, code="OK") == 1
    assert samples.value(REQUESTS, method=WATCH, code="NOT_FOUND") == 1


async def test_unknown_methods_add_no_series(served):
    host, channel, _ = served
    call = channel.unary_unary("/caller.Chosen/Name")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert not (await _scrape(host)).matching(REQUESTS, method="caller.Chosen/Name")


async def test_metrics_disabled_builds_nothing():
    assert ServiceMetrics.build("test", ObservabilitySettings(metrics_enabled=False, metrics_port=0), None) is None


async def test_a_metrics_port_in_use_fails_the_start_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = ServiceMetrics.build("test", ObservabilitySettings(metrics_port=port), None)
        host = ServiceHost("test", ServerSettings(), None, metrics=metrics)
        with pytest.raises(FailedPrecondition) as info:
            await host.start("127.0.0.1", 0)
    assert info.value.field == "metrics_port" and str(port) in str(info.value)
    assert host.port is None  # gRPC never bound


def test_the_metrics_port_follows_the_setting_then_the_topology_replica():
    serving = ServiceEndpoint(name="serving", port=50054, replicas=3, metrics_port=9454)
    default = ObservabilitySettings()
    assert metrics_port_for(default, serving, 50054) == 9454
    assert metrics_port_for(default, serving, 50056) == 9456          # replica 2
    assert metrics_port_for(default, serving, 50057) is None          # not a replica port
    assert metrics_port_for(default, serving, 0) is None              # an ad-hoc process on a free port
    assert metrics_port_for(ObservabilitySettings(metrics_port=0), serving, 0) == 0
    assert metrics_port_for(ObservabilitySettings(metrics_port=9999), serving, 50055) == 9999
    assert metrics_port_for(default, ServiceEndpoint(name="x", port=1), 1) is None
    assert metrics_port_for(default, None, 50054) is None


def test_bad_metrics_settings_name_the_field(monkeypatch):
    monkeypatch.setenv("MLMESH_METRICS_PORT", "70000")
    with pytest.raises(ValueError, match="metrics_port"):
        ObservabilitySettings()
