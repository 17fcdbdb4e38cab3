"""ServiceHost and the mesh interceptor, over real in-process grpc.aio servers and stubs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.auth.keys import key_id
from services.core.auth.principal import current_principal
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.errors import InvalidArgument, NotFound
from services.core.grpc.server import ServiceHost
from services.core.settings import ServerSettings

OPS = "mlmesh.v1.Operations"
SCOPES = {f"/{OPS}/CancelOperation": "operations.cancel", f"/{OPS}/GetOperation": "operations.read"}
REPO = Path(__file__).resolve().parents[2]


class FakeOperations(operations_pb2_grpc.OperationsServicer):
    """Behaviour chosen by the request id. CancelOperation is left unimplemented on purpose."""

    async def GetOperation(self, request, context):
        if request.id == "invalid":
            raise InvalidArgument("bad id", field="id")
        if request.id == "boom":
            raise RuntimeError("secret db password")
        if request.id == "abort":
            await context.abort(grpc.StatusCode.NOT_FOUND, "gone on my own")
        if request.id == "slow":
            await asyncio.sleep(0.5)
        p = current_principal()
        return operations_pb2.Operation(id=request.id, created_by=p.subject if p else "")

    async def ListOperations(self, request, context):
        return operations_pb2.ListOperationsResponse(next_page_token=current_principal().subject)

    async def WatchOperation(self, request, context):
        for i in range(2):
            yield operations_pb2.Operation(id=f"{request.id}-{i}")
        if request.id == "invalid":
            raise NotFound("operation vanished", field="id")
        if request.id == "boom":
            raise RuntimeError("secret stream text")


async def _echo_stream_unary(request_iterator, context):
    async for item in request_iterator:
        if item == b"bad":
            raise InvalidArgument("bad item", field="items")
    raise RuntimeError("secret su")


async def _echo_stream_stream(request_iterator, context):
    async for item in request_iterator:
        if item == b"bad":
            raise InvalidArgument("bad item", field="items")
        yield item


def _register_echo(server):
    handlers = {
        "Sum": grpc.stream_unary_rpc_method_handler(_echo_stream_unary),
        "Echo": grpc.stream_stream_rpc_method_handler(_echo_stream_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def issuer(key):
    return TokenIssuer(key, "mlmesh", 600)


@pytest.fixture
async def host(key):
    verifier = TokenVerifier(key.public_key(), "mlmesh", "registry", leeway_s=5)
    h = ServiceHost("test", ServerSettings(), verifier, SCOPES)
    h.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(FakeOperations(), s), [OPS])
    h.add(_register_echo, [])
    await h.start("127.0.0.1", 0)
    yield h
    await h.stop(0)


@pytest.fixture
async def channel(host):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        yield ch


def _auth(token, rid=None):
    md = [("authorization", f"Bearer {token}")]
    return md + [("x-request-id", rid)] if rid else md


def _trailing(err_or_call) -> dict:
    return dict(err_or_call.trailing_metadata() or ())


async def _get(channel, token, op_id="ok", rid=None):
    stub = operations_pb2_grpc.OperationsStub(channel)
    md = _auth(token, rid) if token else ([("x-request-id", rid)] if rid else None)
    return await stub.GetOperation(operations_pb2.GetOperationRequest(id=op_id), metadata=md)


# --- authentication -------------------------------------------------------------------------------

async def test_valid_token_reaches_handler_with_principal(channel, issuer):
    op = await _get(channel, issuer.mint("svc-a", "registry", ["operations.read"]))
    assert op.created_by == "svc-a"


async def test_missing_token_unauthenticated(channel):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(channel, None)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "missing bearer token"


def _forged(key):
    other = ec.generate_private_key(ec.SECP256R1())
    kid = key_id(key.public_key())
    now = int(time.time())

    def claims(**over):
        c = {"iss": "mlmesh", "sub": "x", "aud": "registry", "scope": "operations.read", "iat": now,
             "nbf": now, "exp": now + 600, "jti": "j"}
        return {**c, **over}

    def sign(k, c):
        return jwt.encode(c, k, algorithm="ES256", headers={"kid": kid})

    return {
        "expired": (sign(key, claims(iat=now - 900, nbf=now - 900, exp=now - 60)), "token expired"),
        "not-yet-valid": (sign(key, claims(nbf=now + 900, exp=now + 1200)), "token not yet valid"),
        "wrong-audience": (sign(key, claims(aud="serving")), "token audience mismatch"),
        "wrong-issuer": (sign(key, claims(iss="other")), "wrong issuer"),
        "bad-signature": (sign(other, claims()), "bad signature"),
        "alg-none": (jwt.encode(claims(), None, algorithm="none"), "unsigned token refused"),
        "hs256": (jwt.encode(claims(), "k" * 40, algorithm="HS256"), "token algorithm 'HS256' refused"),
    }


@pytest.mark.parametrize("case", ["expired", "not-yet-valid", "wrong-audience", "wrong-issuer",
                                  "bad-signature", "alg-none", "hs256"])
async def test_bad_tokens_unauthenticated(channel, key, case):
    token, reason = _forged(key)[case]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(channel, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == reason


async def test_not_bearer_scheme(channel, issuer):
    stub = operations_pb2_grpc.OperationsStub(channel)
    token = issuer.mint("a", "registry", ["operations.read"])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetOperation(operations_pb2.GetOperationRequest(id="ok"),
                                metadata=[("authorization", f"Basic {token}")])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_missing_scope_permission_denied(channel, issuer):
    stub = operations_pb2_grpc.OperationsStub(channel)
    token = issuer.mint("reader", "registry", ["operations.read"])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CancelOperation(operations_pb2.CancelOperationRequest(id="x"), metadata=_auth(token))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "missing scope 'operations.cancel'"
    # With the scope, the call reaches the (unimplemented) handler.
    token = issuer.mint("admin", "registry", ["operations.cancel"])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CancelOperation(operations_pb2.CancelOperationRequest(id="x"), metadata=_auth(token))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_unmapped_method_needs_only_a_valid_token(channel, issuer):
    stub = operations_pb2_grpc.OperationsStub(channel)
    resp = await stub.ListOperations(operations_pb2.ListOperationsRequest(),
                                     metadata=_auth(issuer.mint("anyone", "registry", [])))
    assert resp.next_page_token == "anyone"


async def test_health_and_reflection_need_no_token(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", OPS):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name async for r in call for s in r.list_services_response.service}
    assert names == {OPS, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


# --- error mapping --------------------------------------------------------------------------------

@pytest.fixture
def token(issuer):
    return issuer.mint("svc", "registry", ["operations.read"])


async def test_domain_error_maps_with_field(channel, token):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(channel, token, "invalid", rid="rid-1")
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == "id: bad id"
    assert _trailing(err) == {"mlmesh-error-field": "id", "x-request-id": "rid-1"}


async def test_plain_exception_is_internal_without_its_text(channel, token, caplog):
    with caplog.at_level(logging.ERROR, logger="mlmesh.grpc"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _get(channel, token, "boom", rid="rid-boom")
    err = info.value
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.details() and err.details() == "internal error (request id rid-boom)"
    logged = [r for r in caplog.records if r.name == "mlmesh.grpc"]
    assert len(logged) == 1 and "rid-boom" in logged[0].getMessage()
    assert "secret db password" in str(logged[0].exc_info[1])


async def test_handler_abort_passes_through(channel, token):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(channel, token, "abort", rid="rid-a")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and info.value.details() == "gone on my own"
    assert _trailing(info.value)["x-request-id"] == "rid-a"


@pytest.mark.parametrize("op_id,code,details", [
    ("invalid", grpc.StatusCode.NOT_FOUND, "id: operation vanished"),
    ("boom", grpc.StatusCode.INTERNAL, None),
])
async def test_errors_mid_stream_map(channel, token, op_id, code, details):
    stub = operations_pb2_grpc.OperationsStub(channel)
    call = stub.WatchOperation(operations_pb2.WatchOperationRequest(id=op_id), metadata=_auth(token, "rid-s"))
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for op in call:
            got.append(op.id)
    assert got == [f"{op_id}-0", f"{op_id}-1"]
    assert info.value.code() == code
    assert info.value.details() == (details or "internal error (request id rid-s)")


async def test_stream_request_handlers_map_errors(channel, token):
    md = _auth(token)
    sum_ = channel.stream_unary("/test.Echo/Sum")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sum_(iter([b"a", b"bad"]), metadata=md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details() == "items: bad item"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sum_(iter([b"a"]), metadata=md)
    assert info.value.code() == grpc.StatusCode.INTERNAL and "secret" not in info.value.details()

    echo = channel.stream_stream("/test.Echo/Echo")
    assert [m async for m in echo(iter([b"x", b"y"]), metadata=md)] == [b"x", b"y"]
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for m in echo(iter([b"x", b"bad", b"z"]), metadata=md):
            got.append(m)
    assert got == [b"x"] and info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:  # auth applies to stream requests too
        await sum_(iter([b"a"]))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- request id and access log --------------------------------------------------------------------

async def test_request_id_echoed_or_made(channel, token):
    stub = operations_pb2_grpc.OperationsStub(channel)
    call = stub.GetOperation(operations_pb2.GetOperationRequest(id="ok"), metadata=_auth(token, "abc-123"))
    await call
    assert dict(await call.trailing_metadata())["x-request-id"] == "abc-123"
    call = stub.GetOperation(operations_pb2.GetOperationRequest(id="ok"), metadata=_auth(token))
    await call
    made = dict(await call.trailing_metadata())["x-request-id"]
    assert len(made) == 32
    # An id unfit for logs is replaced, not echoed.
    for bad in ("a b", "x" * 200):
        call = stub.GetOperation(operations_pb2.GetOperationRequest(id="ok"), metadata=_auth(token, bad))
        await call
        assert len(dict(await call.trailing_metadata())["x-request-id"]) == 32


async def test_access_log_one_line_per_call(channel, token, caplog):
    stub = operations_pb2_grpc.OperationsStub(channel)
    with caplog.at_level(logging.INFO, logger="mlmesh.access"):
        await _get(channel, token, "ok", rid="r1")
        with pytest.raises(grpc.aio.AioRpcError):
            await _get(channel, token, "invalid", rid="r2")
        with pytest.raises(grpc.aio.AioRpcError):
            await _get(channel, None, "ok", rid="r3")
        with pytest.raises(grpc.aio.AioRpcError):
            await _get(channel, token, "abort", rid="r4")
        async for _ in stub.WatchOperation(operations_pb2.WatchOperationRequest(id="w"), metadata=_auth(token, "r5")):
            pass
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), metadata=[("x-request-id", "r6")])
        await asyncio.sleep(0.05)  # the server logs after it answers
    lines = [r.getMessage() for r in caplog.records if r.name == "mlmesh.access"]
    assert len(lines) == 6, lines
    expect = [("GetOperation", "OK", "sub=svc", "r1"), ("GetOperation", "INVALID_ARGUMENT", "sub=svc", "r2"),
              ("GetOperation", "UNAUTHENTICATED", "sub=-", "r3"), ("GetOperation", "NOT_FOUND", "sub=svc", "r4"),
              ("WatchOperation", "OK", "sub=svc", "r5"), ("grpc.health.v1.Health/Check", "OK", "sub=-", "r6")]
    for line, (method, code, sub, rid) in zip(sorted(lines, key=lambda l: l.split("rid=")[1]), expect):
        assert method in line and f" {code} " in line and sub in line and f"rid={rid}" in line
        assert "ms " in line and "peer=ipv4:127.0.0.1:" in line


@pytest.mark.parametrize("access_log, logged_ok", [("control", False), ("all", True)])
async def test_quiet_methods_log_only_their_failures_unless_access_log_is_all(key, issuer, caplog, access_log,
                                                                              logged_ok):
    verifier = TokenVerifier(key.public_key(), "mlmesh", "registry", leeway_s=5)
    quiet = ServiceHost("test", ServerSettings(access_log=access_log), verifier, SCOPES,
                        quiet_methods=[f"/{OPS}/GetOperation"])
    quiet.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(FakeOperations(), s), [OPS])
    await quiet.start("127.0.0.1", 0)
    token = issuer.mint("svc", "registry", ["operations.read"])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{quiet.port}") as channel:
            stub = operations_pb2_grpc.OperationsStub(channel)
            with caplog.at_level(logging.INFO, logger="mlmesh.access"):
                await _get(channel, token, "ok", rid="q1")
                with pytest.raises(grpc.aio.AioRpcError):
                    await _get(channel, token, "invalid", rid="q2")
                await stub.ListOperations(operations_pb2.ListOperationsRequest(), metadata=_auth(token, "q3"))
                await asyncio.sleep(0.05)
    finally:
        await quiet.stop(0)
    rids = sorted(line.split("rid=")[1].split()[0] for line in
                  (r.getMessage() for r in caplog.records if r.name == "mlmesh.access"))
    assert rids == (["q1", "q2", "q3"] if logged_ok else ["q2", "q3"])


async def test_deadline_logged_not_treated_as_a_bug(channel, token, caplog):
    with caplog.at_level(logging.INFO):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await operations_pb2_grpc.OperationsStub(channel).GetOperation(
                operations_pb2.GetOperationRequest(id="slow"), metadata=_auth(token, "r-dl"), timeout=0.1)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.name == "mlmesh.grpc"]
    lines = [r.getMessage() for r in caplog.records if r.name == "mlmesh.access"]
    assert len(lines) == 1 and " DEADLINE_EXCEEDED " in lines[0] and "rid=r-dl" in lines[0]


async def test_sync_handlers_and_own_trailers(token):
    def sync_unary(request, context):
        raise InvalidArgument("sync bad", field="f")

    def sync_stream(request, context):
        yield b"1"
        raise RuntimeError("secret sync")

    async def own_trailer(request, context):
        context.set_trailing_metadata((("k", "v"),))
        return b"ok"

    def register(server):
        handlers = {"U": grpc.unary_unary_rpc_method_handler(sync_unary),
                    "S": grpc.unary_stream_rpc_method_handler(sync_stream),
                    "T": grpc.unary_unary_rpc_method_handler(own_trailer)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Sync", handlers),))

    h = ServiceHost("sync", ServerSettings(), None)
    h.add(register, [])
    port = await h.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ch.unary_unary("/test.Sync/U")(b"")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details() == "f: sync bad"
            got = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for m in ch.unary_stream("/test.Sync/S")(b""):
                    got.append(m)
            assert got == [b"1"] and info.value.code() == grpc.StatusCode.INTERNAL
            call = ch.unary_unary("/test.Sync/T")(b"", metadata=[("x-request-id", "mine")])
            assert await call == b"ok"  # the handler's own trailer and the request id both arrive
            assert dict(await call.trailing_metadata()) == {"k": "v", "x-request-id": "mine"}
    finally:
        await h.stop(0)


# --- lifecycle ------------------------------------------------------------------------------------

async def test_stop_flips_health_to_not_serving(key):
    h = ServiceHost("t", ServerSettings(), None, {})
    h.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(FakeOperations(), s), [OPS])
    port = await h.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=OPS))
        stream = watch.__aiter__()
        assert (await stream.__anext__()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(h.stop(grace=0.5))
        assert (await asyncio.wait_for(stream.__anext__(), 2)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
    assert h.health is not None
    with pytest.raises(Exception):
        h.add(lambda s: None, [])


async def test_port_in_use_is_an_error(host):
    other = ServiceHost("dup", ServerSettings(), None)
    with pytest.raises(RuntimeError):
        await other.start("127.0.0.1", host.port)


_SERVER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from tests.core.test_server import FakeOperations, OPS
    from mlmesh.v1 import operations_pb2_grpc
    from services.core.grpc.server import ServiceHost, configure_logging
    from services.core.settings import ServerSettings

    async def main():
        configure_logging("INFO")
        host = ServiceHost("sig", ServerSettings(shutdown_grace_s=5), None)
        host.add(lambda s: operations_pb2_grpc.add_OperationsServicer_to_server(FakeOperations(), s), [OPS])
        print(await host.start("127.0.0.1", 0), flush=True)
        await host.run_until_signal()
        print("drained", flush=True)

    asyncio.run(main())
""")


async def test_sigterm_drains_in_flight_call_and_exits_cleanly():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVER_SCRIPT, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        port = int(await asyncio.wait_for(proc.stdout.readline(), 20))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = operations_pb2_grpc.OperationsStub(ch)
            call = stub.GetOperation(operations_pb2.GetOperationRequest(id="slow"))
            await asyncio.sleep(0.15)  # the call is in the handler's sleep now
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert (await call).id == "slow"
        rc = await asyncio.wait_for(proc.wait(), 10)
        assert time.monotonic() - started < 4  # drained when the call finished, not at the grace limit
        out, err = await proc.communicate()
        assert rc == 0, err.decode()
        assert out.decode().strip() == "drained"
        assert "signal received" in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
