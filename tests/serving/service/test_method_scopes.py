"""The serving service enforces its own method scopes (services/serving/server.py METHOD_SCOPES), whoever
calls it: a token for "serving" whose scopes are too narrow is PERMISSION_DENIED by the service itself, before
the call does anything, for the kill switch (HaltSession, HaltAll), Deploy and ResumeSession; a token with
exactly the scope the method needs passes. Against a serving instance of its own, so its HaltAll halts nothing
another test deployed."""

from __future__ import annotations

import grpc
import pytest
import pytest_asyncio

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth.policy import SERVING_DEPLOY, SERVING_HALT, SERVING_INFER, SERVING_READ
from services.core.settings import AuthSettings, ServerSettings
from services.serving.server import METHOD_SCOPES, ServingSettings, build_serving
from tests.serving.service.conftest import SUBJECT

pytestmark = pytest.mark.asyncio(loop_scope="session")
SESSION = "scoped-alpha"

CALLS = {
    "Deploy": serving_pb2.DeployRequest(model="alpha_bull", session_id="scoped-denied"),
    "ResumeSession": serving_pb2.ResumeSessionRequest(session_id=SESSION),
    "HaltSession": serving_pb2.HaltSessionRequest(session_id=SESSION, reason="denied"),
    "HaltAll": serving_pb2.HaltAllRequest(reason="denied", this_replica_only=True),
}
NEEDS = {"Deploy": SERVING_DEPLOY, "ResumeSession": SERVING_DEPLOY, "HaltSession": SERVING_HALT,
         "HaltAll": SERVING_HALT}
TOO_NARROW = {"read-only": [SERVING_READ], "infer-only": [SERVING_INFER],
              "read and infer": [SERVING_READ, SERVING_INFER]}
# each method with every too-narrow token, and with the other privileged scope (halt cannot deploy or resume,
# deploy cannot halt)
DENIED = [(method, name, scopes) for method in CALLS for name, scopes in TOO_NARROW.items()] + [
    (method, "the other privileged scope", [SERVING_HALT if NEEDS[method] == SERVING_DEPLOY else SERVING_DEPLOY])
    for method in CALLS]


async def test_the_table_says_what_this_test_expects():
    assert {m: METHOD_SCOPES[f"/mlmesh.v1.Serving/{m}"] for m in CALLS} == NEEDS


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scoped(mesh_settings, registry, models, issuer):
    """Its own serving instance with SESSION deployed, and a caller that mints a token with the given scopes."""
    app = await build_serving(mesh_settings, ServerSettings(), AuthSettings(),
                              serving=ServingSettings(executor="in_process", start_triton=False),
                              registry_address=registry.address)
    port = await app.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = serving_pb2_grpc.ServingStub(channel)

            def call(method: str, request, scopes: list[str]):
                token = issuer.mint(SUBJECT, "serving", scopes)
                return getattr(raw, method)(request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)

            await call("Deploy", serving_pb2.DeployRequest(model="alpha_bull", session_id=SESSION), [SERVING_DEPLOY])
            yield call, app
    finally:
        await app.stop(0)


@pytest.mark.parametrize(("method", "token", "scopes"), DENIED, ids=[f"{m}-{t}" for m, t, _ in DENIED])
async def test_a_too_narrow_token_is_denied_by_the_service_and_changes_nothing(scoped, method, token, scopes):
    call, app = scoped
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await call(method, CALLS[method], scopes)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, denied.value.details()
    assert NEEDS[method] in denied.value.details()
    assert {s.id: s.state.value for s in app.manager.list()} == {SESSION: "ready"}   # nothing halted or deployed


async def test_the_scope_each_method_needs_is_enough(scoped):
    call, app = scoped
    halted = await call("HaltSession", serving_pb2.HaltSessionRequest(session_id=SESSION, reason="drill"),
                        [SERVING_HALT])
    assert halted.state == serving_pb2.SESSION_STATE_HALTED and halted.halt_reason == "drill"
    resumed = await call("ResumeSession", serving_pb2.ResumeSessionRequest(session_id=SESSION), [SERVING_DEPLOY])
    assert resumed.state == serving_pb2.SESSION_STATE_READY
    deployed = await call("Deploy", serving_pb2.DeployRequest(model="alpha_bull", session_id="scoped-second"),
                          [SERVING_DEPLOY])
    assert deployed.id == "scoped-second" and deployed.state == serving_pb2.SESSION_STATE_READY
    everything = await call("HaltAll", serving_pb2.HaltAllRequest(reason="closing", this_replica_only=True),
                            [SERVING_HALT])
    assert sorted(r.session_id for r in everything.results if r.halted) == [SESSION, "scoped-second"]
    assert {s.id: s.state.value for s in app.manager.list()} == {SESSION: "halted", "scoped-second": "halted"}
