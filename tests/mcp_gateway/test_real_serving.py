"""The serving tools against the real serving service (in-process executor) and the real registry, with a
demo predictor trained briefly, saved signed and registered: serve -> predict (equal to the same Predict
made directly over gRPC) -> list_serving -> halt_serving -> predict refused -> halt_all; and halt_serving /
halt_all with cancel_running fail a batch the model is still running at once."""

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
