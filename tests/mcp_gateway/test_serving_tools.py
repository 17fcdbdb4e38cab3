"""Serving tools through a real MCP session against the Serving contract double (real gRPC, real mesh
interceptor and token checks): serve -> predict -> list_serving -> halt_serving -> predict refused ->
halt_all; the other four interfaces; the gateway's identity on every call. The errors each argument gets are
checked against the real serving service (test_real_serving.py)."""

from __future__ import annotations

import logging

import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.requests import Request

from services.core.grpc.interceptor import current_request_id
from services.mcp_gateway.auth import access_token
from services.mcp_gateway.server import PRINCIPAL_KEY
from tests.mcp_gateway.conftest import AGENT, mcp_http


async def test_serve_predict_halt_lifecycle(http_app, agent_token, serving):
    async with mcp_http(http_app, agent_token()) as client:
        served = await client.call_tool("data.ml.serve", {"model": "alpha_bull@prod", "interface": "predictor",
                                                          "max_batch_size": 16, "session_id": "alpha"})
        session = served.structured_content["session"]
        assert (session["id"], session["state"], session["interface"]) == ("alpha", "ready", "predictor")
        assert session["max_batch_size"] == 16 and session["stats"]["breaker_state"] == "unspecified"

        predicted = await client.call_tool("data.ml.predict", {"session_id": "alpha",
                                                               "rows": [[1, 2, 3], {"a": 1, "b": 1, "c": 1}]})
        assert predicted.structured_content["predictions"] == [[6.0], [3.0]]
        assert predicted.structured_content["meta"]["batch_size"] == 2

        listed = (await client.call_tool("data.ml.list_serving", {"state": "ready"})).structured_content
        assert [s["id"] for s in listed["sessions"]] == ["alpha"]

        halted = await client.call_tool("data.ml.halt_serving", {"session_id": "alpha", "reason": "drift"})
        assert halted.structured_content["session"]["state"] == "halted"
        assert halted.structured_content["session"]["halt_reason"] == "drift"

        refused = await client.call_tool("data.ml.predict", {"session_id": "alpha", "rows": [[1, 2, 3]]})
        assert refused.is_error and refused.content[0].text.startswith("UNAVAILABLE: session alpha is halted: drift")

        await client.call_tool("data.ml.serve", {"model": "alpha_bear@prod", "interface": "predictor",
                                                 "session_id": "beta"})
        everything = (await client.call_tool("data.ml.halt_all", {"reason": "kill switch"})).structured_content
        assert everything["halted"] == 2 and all(r["halted"] for r in everything["results"])
        assert (await client.call_tool("data.ml.list_serving", {"state": "ready"})).structured_content == {
            "sessions": []}


async def test_the_other_interfaces(http_app, agent_token, serving):
    async with mcp_http(http_app, agent_token()) as client:
        for interface in ("forecaster", "classifier", "segmenter", "analyzer"):
            await client.call_tool("data.ml.serve", {"model": "m", "interface": interface, "session_id": interface})
        forecast = await client.call_tool("data.ml.forecast", {"session_id": "forecaster", "history": [1, 2, 5],
                                                               "horizon": 3})
        assert forecast.structured_content["forecast"] == [5.0, 5.0, 5.0]
        classified = await client.call_tool("data.ml.classify", {"session_id": "classifier", "rows": [[1, 1]]})
        assert classified.structured_content["classifications"][0]["label"] == "bull"
        assert classified.structured_content["classifications"][0]["scores"][1] == {"label": "bull",
                                                                                    "probability": 0.75}
        segmented = await client.call_tool("data.ml.segment", {"session_id": "segmenter",
                                                               "series": [1, 1, 1, 9, 9, 9]})
        assert segmented.structured_content["change_points"] == [3]
        assert segmented.structured_content["segments"][1] == {"start": 3, "end": 6, "mean": 9.0, "stddev": 0.0}
        analyzed = await client.call_tool("data.ml.analyze", {"session_id": "analyzer", "texts": ["good news"]})
        assert analyzed.structured_content["analyses"] == [{"label": "positive", "score": 0.5,
                                                            "scores": {"positive": 0.5}}]


async def test_backends_are_called_as_the_gateway_for_the_agent(http_app, agent_token, serving):
    token = agent_token(["serving.deploy", "serving.infer"])
    async with mcp_http(http_app, token) as client:
        await client.call_tool("data.ml.serve", {"model": "m", "interface": "predictor", "session_id": "p"})
        await client.call_tool("data.ml.predict", {"session_id": "p", "rows": [[1, 2, 3]]})
    deploy, predict = serving.calls
    for seen in (deploy, predict):
        assert seen.principal.subject == "mlmesh-ml-mcp" and seen.principal.on_behalf_of == AGENT
        assert seen.principal.audience == "serving"
        assert token not in seen.metadata["authorization"]    # never the agent's own token
    # least privilege: each call's token carries only what that tool needs
    assert deploy.principal.scopes == {"serving.deploy"} and predict.principal.scopes == {"serving.infer"}
    assert predict.metadata["x-request-id"] != deploy.metadata["x-request-id"]


async def test_a_missing_scope_never_reaches_serving_even_without_the_http_gate(gateway, agent_token, serving):
    """The tool handler re-checks the scope, so a caller that bypasses the HTTP gate still cannot run it."""
    principal = gateway.verifier.verify(agent_token(["serving.read"]))
    scope = {"type": "http", "method": "POST", "path": "/mcp/ml", "headers": [],
             "user": AuthenticatedUser(access_token("t", principal)), PRINCIPAL_KEY: principal}

    class Ctx:
        request = Request(scope)
        session = None

    result = await gateway.tools.call_tool(Ctx(), types.CallToolRequestParams(
        name="data.ml.halt_all", arguments={"reason": "x"}))
    assert result.is_error and result.content[0].text.startswith("PERMISSION_DENIED")
    assert serving.calls == []   # nothing reached the backend


async def test_a_tool_calls_log_lines_name_the_request_id_its_backend_call_carried(http_app, agent_token, serving,
                                                                                   caplog):
    seen: list[str | None] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(current_request_id())   # what a JSON log line would name
    logging.getLogger("mlmesh.audit").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="mlmesh.audit"):
            async with mcp_http(http_app, agent_token(["serving.deploy"])) as client:
                await client.call_tool("data.ml.serve", {"model": "m", "interface": "predictor", "session_id": "q"})
    finally:
        logging.getLogger("mlmesh.audit").removeHandler(handler)
    (deploy,) = serving.calls
    assert seen == [deploy.metadata["x-request-id"]]
    assert current_request_id() is None   # bound for the call only
