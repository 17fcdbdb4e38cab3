"""W3C trace context through the mesh interceptor and the mesh channels, over real in-process grpc.aio
servers: recorded server spans (parents, attributes, status), carry-only mode, and tracing off."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.auth.tokens import TokenIssuer
from services.core.errors import NotFound
from services.core.grpc.client import connect
from services.core.grpc.interceptor import MeshInterceptor
from services.core.observability.grpc_tracing import ServerTracing
from services.core.settings import AuthSettings, MeshSettings

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{CALLER_SPAN:016x}-01"


class Front(operations_pb2_grpc.OperationsServicer):
    """Calls the back service through a mesh channel, as a service calls another."""

    def __init__(self, back: operations_pb2_grpc.OperationsStub) -> None:
        self.back = back

    async def GetOperation(self, request, context):
        if request.id == "missing":
            raise NotFound("no such operation", field="id")
        if request.id == "boom":
            raise RuntimeError("bug")
        return await self.back.GetOperation(request)


class Back(operations_pb2_grpc.OperationsServicer):
    def __init__(self) -> None:
        self.seen: list[trace.SpanContext] = []

    async def GetOperation(self, request, context):
        self.seen.append(trace.get_current_span().get_span_context())
        return operations_pb2.Operation(id=request.id)


@pytest.fixture
async def start_pair(tmp_path):
    """Front -> back, each a grpc.aio server with the mesh interceptor using `tracing`."""
    servers, channels = [], []
    issuer = TokenIssuer.from_settings(MeshSettings(home=tmp_path), AuthSettings())

    async def start(tracing: ServerTracing) -> tuple[operations_pb2_grpc.OperationsStub, Back]:
        back = Back()
        back_server = grpc.aio.server(interceptors=[MeshInterceptor(None, tracing=tracing)])
        operations_pb2_grpc.add_OperationsServicer_to_server(back, back_server)
        back_port = back_server.add_insecure_port("127.0.0.1:0")
        channel = connect(f"127.0.0.1:{back_port}", "back", issuer, "front", ["operations.read"])
        front_server = grpc.aio.server(interceptors=[MeshInterceptor(None, tracing=tracing)])
        operations_pb2_grpc.add_OperationsServicer_to_server(Front(operations_pb2_grpc.OperationsStub(channel)),
                                                             front_server)
        front_port = front_server.add_insecure_port("127.0.0.1:0")
        for server in (back_server, front_server):
            await server.start()
            servers.append(server)
        outer = grpc.aio.insecure_channel(f"127.0.0.1:{front_port}")
        channels.extend([channel, outer])
        return operations_pb2_grpc.OperationsStub(outer), back

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


async def test_server_spans_join_the_callers_trace_across_two_services(start_pair, tracer, exporter):
    stub, back = await start_pair(ServerTracing(tracer))
    await stub.GetOperation(operations_pb2.GetOperationRequest(id="op-1"),
                            metadata=(("traceparent", TRACEPARENT),))
    back_span, front_span = exporter.get_finished_spans()   # the back call ends first
    assert {back_span.context.trace_id, front_span.context.trace_id} == {TRACE_ID}
    assert front_span.parent.span_id == CALLER_SPAN and front_span.parent.is_remote
    assert back_span.parent.span_id == front_span.context.span_id
    assert front_span.kind == SpanKind.SERVER and front_span.name == "mlmesh.v1.Operations/GetOperation"
    assert dict(front_span.attributes) == {"rpc.system": "grpc", "rpc.service": "mlmesh.v1.Operations",
                                           "rpc.method": "GetOperation", "rpc.grpc.status_code": 0}
    assert back.seen[0].span_id == back_span.context.span_id   # the handler runs inside its span


async def test_a_call_without_traceparent_starts_a_new_trace(start_pair, tracer, exporter):
    stub, _ = await start_pair(ServerTracing(tracer))
    await stub.GetOperation(operations_pb2.GetOperationRequest(id="op-2"))
    back_span, front_span = exporter.get_finished_spans()
    assert front_span.parent is None and back_span.context.trace_id == front_span.context.trace_id


@pytest.mark.parametrize("op_id, code, error", [("missing", grpc.StatusCode.NOT_FOUND, False),
                                                 ("boom", grpc.StatusCode.INTERNAL, True)])
async def test_failed_calls_record_their_status(start_pair, tracer, exporter, op_id, code, error):
    stub, _ = await start_pair(ServerTracing(tracer))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetOperation(operations_pb2.GetOperationRequest(id=op_id), metadata=(("traceparent", TRACEPARENT),))
    assert raised.value.code() == code
    (span,) = exporter.get_finished_spans()
    assert span.attributes["rpc.grpc.status_code"] == code.value[0]
    # a caller's mistake is not the server's error; a bug is
    assert (span.status.status_code == StatusCode.ERROR) is error


async def test_carry_mode_records_nothing_but_passes_the_callers_context_on(start_pair, exporter):
    stub, back = await start_pair(ServerTracing(None))
    await stub.GetOperation(operations_pb2.GetOperationRequest(id="op-3"), metadata=(("traceparent", TRACEPARENT),))
    assert exporter.get_finished_spans() == ()
    (seen,) = back.seen
    assert (seen.trace_id, seen.span_id) == (TRACE_ID, CALLER_SPAN)   # two hops on, still the caller's trace


async def test_tracing_off_neither_records_nor_carries(start_pair, tracer, exporter):
    stub, back = await start_pair(ServerTracing(tracer, enabled=False))
    await stub.GetOperation(operations_pb2.GetOperationRequest(id="op-4"), metadata=(("traceparent", TRACEPARENT),))
    assert exporter.get_finished_spans() == ()
    assert not back.seen[0].is_valid


async def test_a_trace_the_caller_did_not_sample_is_carried_not_recorded(start_pair, tracer, exporter):
    stub, back = await start_pair(ServerTracing(tracer))
    unsampled = TRACEPARENT[:-2] + "00"
    await stub.GetOperation(operations_pb2.GetOperationRequest(id="op-5"), metadata=(("traceparent", unsampled),))
    assert exporter.get_finished_spans() == ()
    (seen,) = back.seen
    assert (seen.trace_id, seen.span_id, seen.trace_flags.sampled) == (TRACE_ID, CALLER_SPAN, False)
