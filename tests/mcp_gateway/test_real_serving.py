"""The serving tools against the real serving service (in-process executor) and the real registry, with a
demo predictor trained briefly, saved signed and registered: serve -> predict (equal to the same Predict
made directly over gRPC) -> list_serving -> halt_serving -> predict refused -> halt_all; and halt_serving /
halt_all with cancel_running fail a batch the model is still running at once; and the error each bad argument
gets, as the real service (or the gateway before it) answers it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import torch

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.mesh.demo import data
from tests.mcp_gateway.conftest import mcp_http, running
from tests.serving.conftest import SERIES, gated_segmenter


async def test_serve_predict_halt_against_real_serving(make_gateway, real_serving, alpha, agent_token, issuer,
                                                        access_log):
    rows = data.market(4, torch.Generator().manual_seed(3), regime=0)[0].tolist()
    gateway = make_gateway(backends={"serving": real_serving.address})
    async with running(gateway) as app, mcp_http(app, agent_token()) as client:
        served = await client.call_tool("data.ml.serve", {"model": "alpha_bull@prod", "session_id": "gw-alpha"})
        assert not served.is_error, served.content
        session = served.structured_content["session"]
        assert (session["state"], session["interface"], session["artifact_id"]) == ("ready", "predictor", alpha.id)

        predicted = await client.call_tool("data.ml.predict", {"session_id": "gw-alpha", "rows": rows})
        assert not predicted.is_error, predicted.content
        async with grpc.aio.insecure_channel(real_serving.address) as channel:
            direct = await serving_pb2_grpc.ServingStub(channel).Predict(
                serving_pb2.PredictRequest(session_id="gw-alpha",
                                           rows=[serving_pb2.FeatureRow(values=r) for r in rows]),
                metadata=(("authorization", f"Bearer {issuer.mint('operator', 'serving', ALL_SCOPES)}"),))
        assert predicted.structured_content["predictions"] == [list(p.values) for p in direct.predictions]
        assert predicted.structured_content["meta"]["artifact_id"] == alpha.id

        listed = (await client.call_tool("data.ml.list_serving", {})).structured_content["sessions"]
        assert [(s["id"], s["state"]) for s in listed] == [("gw-alpha", "ready")]
        assert listed[0]["stats"]["requests_total"] >= 2

        halted = await client.call_tool("data.ml.halt_serving", {"session_id": "gw-alpha", "reason": "drift seen"})
        assert halted.structured_content["session"]["state"] == "halted"
        refused = await client.call_tool("data.ml.predict", {"session_id": "gw-alpha", "rows": rows})
        assert refused.is_error and refused.meta["mlmesh/error"]["code"] == "UNAVAILABLE", refused.content

        wrong = await client.call_tool("data.ml.predict", {"session_id": "nope", "rows": rows})
        assert wrong.meta["mlmesh/error"]["code"] == "NOT_FOUND", wrong.content

        await client.call_tool("data.ml.serve", {"model": alpha.id, "interface": "predictor", "session_id": "gw-2"})
        stopped = (await client.call_tool("data.ml.halt_all", {"reason": "end of test"})).structured_content
        assert stopped["halted"] >= 1 and any(r["session_id"] == "gw-2" and r["halted"] for r in stopped["results"])
    served_calls = access_log.calls("/mlmesh.v1.Serving/")
    assert served_calls and all("sub=mlmesh-ml-mcp" in line or "sub=operator" in line for line in served_calls)
    await gateway.close()


async def test_cancel_running_reaches_serving_from_both_halt_tools(make_gateway, real_serving, agent_token, issuer):
    gateway = make_gateway(backends={"serving": real_serving.address})
    gates = {session_id: await gated_segmenter(real_serving.manager, session_id) for session_id in ("gw-one", "gw-all")}
    metadata = (("authorization", f"Bearer {issuer.mint('operator', 'serving', ALL_SCOPES)}"),)
    async with (running(gateway) as app, mcp_http(app, agent_token()) as client,
                grpc.aio.insecure_channel(real_serving.address) as channel):
        stub = serving_pb2_grpc.ServingStub(channel)
        for tool, arguments, session_id in (("data.ml.halt_serving", {"session_id": "gw-one"}, "gw-one"),
                                            ("data.ml.halt_all", {}, "gw-all")):
            held = asyncio.ensure_future(stub.Segment(serving_pb2.SegmentRequest(
                session_id=session_id, series=SERIES), metadata=metadata))
            await gates[session_id].entered()   # on the model, which waits for the gate (up to 5 s)
            halted = await client.call_tool(tool, {**arguments, "reason": "agent: stop", "cancel_running": True})
            assert not halted.is_error, halted.content
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(held, 3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
            assert not gates[session_id].go.is_set()   # answered while the model still ran
        for gate in gates.values():
            gate.go.set()
    await gateway.close()


async def test_serving_errors_name_the_argument(make_gateway, real_serving, alpha, agent_token):
    """Each refusal names the agent's argument: the gateway's own checks, and the real service's (a ragged or
    too-narrow `rows` is refused as a whole, never as one row by index)."""
    gateway = make_gateway(backends={"serving": real_serving.address})
    row = data.market(1, torch.Generator().manual_seed(5), regime=0)[0].tolist()[0]   # alpha_bull: 6 features
    async with running(gateway) as app, mcp_http(app, agent_token()) as client:
        served = await client.call_tool("data.ml.serve", {"model": alpha.id, "interface": "predictor",
                                                          "session_id": "p"})
        assert not served.is_error, served.content
        cases = [
            ("data.ml.predict", {"session_id": "p", "rows": [row, [1, 2]]}, "INVALID_ARGUMENT", "rows",
             "rows must all have the same number of values"),
            ("data.ml.predict", {"session_id": "p", "rows": [[1, 2, 3]]}, "INVALID_ARGUMENT", "rows",
             "TensorShapeGuard: expected 6 features per row, got 3"),
            ("data.ml.predict", {"session_id": "nope", "rows": [row]}, "NOT_FOUND", "session_id", "'nope'"),
            ("data.ml.predict", {"session_id": "p", "rows": [[1, "x", 3, 4, 5, 6]]}, "INVALID_ARGUMENT",
             "rows[0][1]", "valid number"),
            ("data.ml.predict", {"session_id": "p", "rows": []}, "INVALID_ARGUMENT", "rows", "at least 1"),
            ("data.ml.forecast", {"session_id": "p", "history": [1], "horizon": 1}, "FAILED_PRECONDITION",
             "session_id", "serves the predictor interface, not forecaster"),
            ("data.ml.classify", {"session_id": "p", "rows": [[1]], "texts": ["a"]}, "INVALID_ARGUMENT", None,
             "either rows or texts"),
            ("data.ml.serve", {"model": alpha.id, "interface": "oracle"}, "INVALID_ARGUMENT", "interface",
             "'predictor'"),
            ("data.ml.serve", {"model": alpha.id, "interface": "predictor", "max_batch_size": 65537},
             "INVALID_ARGUMENT", "max_batch_size", "65536"),
            ("data.ml.halt_all", {}, "INVALID_ARGUMENT", "reason", "required"),
            ("data.ml.halt_all", {"reason": "x", "cancel_running": "yes"}, "INVALID_ARGUMENT", "cancel_running",
             "boolean"),
            ("data.ml.halt_serving", {"session_id": "p", "cancel_running": 1}, "INVALID_ARGUMENT", "cancel_running",
             "boolean"),
        ]
        for tool, arguments, code, argument, text in cases:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            error = result.meta["mlmesh/error"]
            assert (error["code"], error["argument"]) == (code, argument), (tool, arguments, result.content[0].text)
            assert text in error["message"], (tool, arguments, error)

        # a batch of 2048 is the service's to allow, and it does
        big = await client.call_tool("data.ml.serve", {"model": alpha.id, "interface": "predictor",
                                                       "max_batch_size": 2048, "session_id": "big"})
        assert not big.is_error, big.content
        assert big.structured_content["session"]["max_batch_size"] == 2048
        predicted = await client.call_tool("data.ml.predict", {"session_id": "p", "rows": [row]})
        assert not predicted.is_error and len(predicted.structured_content["predictions"]) == 1
    await gateway.close()
