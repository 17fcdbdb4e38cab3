"""data.ml.pull through a real MCP session against the real puller and registry and a local hub:
progress notifications from WatchOperation, the registered model, operation_status, lineage; a client
cancel cancels the operation on the puller; a failed pull is a tool error naming the argument."""

from __future__ import annotations

import asyncio

import anyio
import grpc
import pytest

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from tests.mcp_gateway.conftest import mcp_http, mcp_url
from tests.puller.conftest import safetensors_bytes

CONFIG = b'{"architectures": ["Tiny"]}'


@pytest.mark.parametrize("mode", ["auto", "legacy"])   # the 2026-07-28 single-exchange HTTP, and sessions
async def test_pull_reports_progress_and_registers_the_model(http_app, agent_token, hub, mode):
    commit = hub.add_commit("org/tiny", {"config.json": CONFIG, "model.safetensors": safetensors_bytes(3)})
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(value, total, message):
        seen.append((value, total, message))

    async with mcp_http(http_app, agent_token(), mode=mode) as client:
        result = await client.call_tool("data.ml.pull", {"source": "hf://org/tiny", "aliases": ["prod"]},
                                        progress_callback=progress)
        assert not result.is_error, result.content
        pulled = result.structured_content
        model = pulled["model"]
        assert model["name"] == "org/tiny" and model["source_uri"] == f"hf://org/tiny@{commit}"
        assert set(model["aliases"]) == {"org/tiny@latest", "org/tiny@prod"} and model["signed"]

        assert seen, "no progress notification arrived"
        values = [v for v, _, _ in seen]
        assert values == sorted(values) and len(set(values)) == len(values)   # strictly increasing
        stages = [m.split(":")[0] for _, _, m in seen]
        assert stages[0] == "pending" and stages[-1] == "register", seen
        assert set(stages) <= {"pending", "resolve", "download", "verify", "store", "register"}, seen

        status = (await client.call_tool("data.ml.operation_status",
                                         {"operation_id": pulled["operation_id"]})).structured_content["operation"]
        assert status["state"] == "succeeded" and status["kind"] == "pull" and status["service"] == "puller"
        assert status["created_by"] == "mlmesh-ml-mcp" and status["result"]["id"] == model["id"]

        graph = (await client.call_tool("data.ml.lineage", {"entity": model["id"], "direction": "upstream"}))
        edges = {(e["source"], e["operation"]) for e in graph.structured_content["edges"]}
        assert (f"source:hf://org/tiny@{commit}", "pull") in edges

        listed = (await client.call_tool("data.ml.list_models", {"name": "org/tiny"})).structured_content
        assert [m["id"] for m in listed["models"]] == [model["id"]]


async def test_a_failed_pull_is_a_tool_error(http_app, agent_token, hub):
    async with mcp_http(http_app, agent_token()) as client:
        missing = await client.call_tool("data.ml.pull", {"source": "hf://org/missing"})
        bad = await client.call_tool("data.ml.pull", {"source": "s3://bucket/model"})
    assert missing.is_error and missing.meta["mlmesh/error"]["code"] == "NOT_FOUND"
    assert missing.meta["mlmesh/error"]["argument"] == "source" and "operation " in missing.content[0].text
    assert bad.content[0].text.startswith("INVALID_ARGUMENT (argument `source`)")


async def test_a_client_cancel_cancels_the_operation(live_gateway, issuer, hub, puller, audit_lines, access_log):
    hub.add_commit("org/big", {"config.json": b"{}", "model.safetensors": b"\1" * (40 * 1024 * 1024)})
    hub.chunk_delay_s = 0.05
    downloading = asyncio.Event()

    async def progress(value, total, message):
        if message and message.startswith("download:"):
            downloading.set()

    async with live_gateway() as (url, _), mcp_url(url, issuer.mint("agent-7", url, ["puller.pull"])) as client:
        async with anyio.create_task_group() as tg:
            async def call():
                await client.call_tool("data.ml.pull", {"source": "hf://org/big"}, progress_callback=progress)

            tg.start_soon(call)
            with anyio.fail_after(30):
                await downloading.wait()
            tg.cancel_scope.cancel()

    metadata = (("authorization", f"Bearer {issuer.mint('test-operator', 'puller', ALL_SCOPES)}"),)
    async with grpc.aio.insecure_channel(puller.address) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        with anyio.fail_after(30):
            while True:
                (op,) = (await stub.ListOperations(operations_pb2.ListOperationsRequest(kind="pull"),
                                                   metadata=metadata)).operations
                if op.state == operations_pb2.OPERATION_STATE_CANCELLED:
                    break
                await asyncio.sleep(0.05)
    assert op.cancel_requested and op.error.code == "CANCELLED"
    assert any(line.startswith("/mlmesh.v1.Operations/CancelOperation OK") and "sub=mlmesh-ml-mcp" in line
               for line in access_log.calls())   # the gateway cancelled it, in its own name
    await asyncio.sleep(0.2)
    assert hub.bodies_sent[-1] < 40 * 1024 * 1024   # the download stopped mid-file
    assert audit_lines()[-1]["outcome"] == "CANCELLED" and audit_lines()[-1]["tool"] == "data.ml.pull"
