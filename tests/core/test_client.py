"""Authenticated channels, token re-minting, and status -> domain error on the calling side."""

from __future__ import annotations

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import current_principal
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.errors import Internal, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from services.core.grpc import client as client_mod
from services.core.grpc import interceptor
from services.core.grpc.client import connect, operator_token, raise_domain_error
from services.core.grpc.server import ServiceHost
from services.core.settings import AuthSettings, MeshSettings, ServerSettings

OPS = "mlmesh.v1.Operations"


class WhoAmI(operations_pb2_grpc.OperationsServicer):
    """Answers with who called, for whom, and the request id; 'invalid' raises a domain error."""

    async def GetOperation(self, request, context):
        if request.id == "invalid":
            raise InvalidArgument("bad id", field="id")
        p = current_principal()
        rid = dict(context.invocation_metadata()).get("x-request-id", "")
        return operations_pb2.Operation(id=rid, created_by=p.subject, kind=p.on_behalf_of or "",
                                        service=" ".join(sorted(p.scopes)))

    async def WatchOperation(self, request, context):
        yield operations_pb2.Operation(created_by=current_principal().subject)


async def _who_su(request_iterator, context):
    return b"".join([m async for m in request_iterator]) + current_principal().subject.encode()


async def _who_ss(request_iterator, context):
    async for m in request_iterator:
        yield m + current_principal().subject.encode()


def _register_who_streams(server):
    handlers = {"SU": grpc.stream_unary_rpc_method_handler(_who_su),
                "SS": grpc.stream_stream_rpc_method_handler(_who_ss)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Who", handlers),))


@pytest.fixture
def issuer():
    return TokenIssuer(ec.generate_private_key(ec.SECP256R1()), "mlmesh", 600)


@pytest.fixture
async def address(issuer):
    verifier = TokenVerifier(issuer.public_key(), "mlmesh", "registry")
    host = ServiceHost("registry", ServerSettings(), verifier, {f"/{OPS}/CancelOperation": "operations.cancel"})
    host.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(WhoAmI(), s), [OPS])
    host.add(_register_who_streams, [])
    port = await host.start("127.0.0.1", 0)
    yield f"127.0.0.1:{port}"
    await host.stop(0)


async def test_channel_attaches_token_for_audience(address, issuer):
    async with connect(address, "registry", issuer, "gateway", ["operations.read"], on_behalf_of="agent-9") as ch:
        stub = operations_pb2_grpc.OperationsStub(ch)
        op = await stub.GetOperation(operations_pb2.GetOperationRequest(id="x"))
        assert (op.created_by, op.kind, op.service) == ("gateway", "agent-9", "operations.read")
        assert [o.created_by async for o in stub.WatchOperation(operations_pb2.WatchOperationRequest())] == ["gateway"]


async def test_stream_request_calls_carry_the_token(address, issuer):
    async with connect(address, "registry", issuer, "gw", []) as ch:
        assert await ch.stream_unary("/test.Who/SU")(iter([b"a", b"b"])) == b"abgw"
        assert [m async for m in ch.stream_stream("/test.Who/SS")(iter([b"a", b"b"]))] == [b"agw", b"bgw"]


async def test_token_cached_and_reminted_before_expiry(address, issuer, monkeypatch):
    minted = []
    real_mint = issuer.mint
    monkeypatch.setattr(issuer, "mint", lambda *a, **k: minted.append(1) or real_mint(*a, **k))
    clock = [1000.0]
    monkeypatch.setattr(client_mod.time, "monotonic", lambda: clock[0])
    async with connect(address, "registry", issuer, "svc", []) as ch:
        stub = operations_pb2_grpc.OperationsStub(ch)
        for _ in range(5):
            await stub.GetOperation(operations_pb2.GetOperationRequest(id="x"))
        assert len(minted) == 1
        clock[0] += issuer.ttl_s * 0.5
        await stub.GetOperation(operations_pb2.GetOperationRequest(id="x"))
        assert len(minted) == 1
        clock[0] += issuer.ttl_s * 0.35  # past 80% of the token's life: mint a fresh one
        await stub.GetOperation(operations_pb2.GetOperationRequest(id="x"))
        assert len(minted) == 2


async def test_request_id_propagates_to_outgoing_calls(address, issuer):
    token = interceptor._REQUEST_ID.set("upstream-rid")
    try:
        async with connect(address, "registry", issuer, "svc", []) as ch:
            op = await operations_pb2_grpc.OperationsStub(ch).GetOperation(operations_pb2.GetOperationRequest())
    finally:
        interceptor._REQUEST_ID.reset(token)
    assert op.id == "upstream-rid"


async def test_wrong_audience_becomes_domain_unauthenticated(address, issuer):
    async with connect(address, "serving", issuer, "svc", ALL_SCOPES) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await operations_pb2_grpc.OperationsStub(ch).GetOperation(operations_pb2.GetOperationRequest())
    with pytest.raises(Unauthenticated, match="token audience mismatch") as err:
        raise_domain_error(info.value)
    assert err.value.__cause__ is info.value


async def test_domain_errors_cross_the_wire(address, issuer):
    async with connect(address, "registry", issuer, "svc", []) as ch:
        stub = operations_pb2_grpc.OperationsStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetOperation(operations_pb2.GetOperationRequest(id="invalid"))
        with pytest.raises(InvalidArgument) as err:
            raise_domain_error(info.value)
        assert err.value.field == "id" and err.value.message == "bad id" and str(err.value) == "id: bad id"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CancelOperation(operations_pb2.CancelOperationRequest(id="x"))
        with pytest.raises(PermissionDenied, match="missing scope 'operations.cancel'"):
            raise_domain_error(info.value)


def _rpc_error(code, details):
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_raise_domain_error_maps_codes():
    with pytest.raises(NotFound, match="no such thing"):
        raise_domain_error(_rpc_error(grpc.StatusCode.NOT_FOUND, "no such thing"))
    with pytest.raises(Internal):  # a peer's bug is a bug here too, never "unavailable, retry"
        raise_domain_error(_rpc_error(grpc.StatusCode.INTERNAL, "internal error (request id r)"))
    with pytest.raises(Unavailable):  # a status with no domain class of its own still raises a domain error
        raise_domain_error(_rpc_error(grpc.StatusCode.OUT_OF_RANGE, "past the end"))


def test_operator_token_has_every_scope(tmp_path):
    mesh, auth = MeshSettings(home=tmp_path), AuthSettings()
    token = operator_token(mesh, auth, "registry")
    principal = TokenVerifier.from_settings(mesh, auth, "registry").verify(token)
    assert principal.subject == "operator" and principal.scopes == ALL_SCOPES
