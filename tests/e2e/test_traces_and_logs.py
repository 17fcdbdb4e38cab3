"""Traces and logs of the mesh as real processes (`mlmesh up --demo`: registry, serving, the MCP gateway),
exporting spans over OTLP/gRPC to a collector this test runs.

A skill run through the gateway, over a real MCP client session, is one trace: the agent's traceparent
(`_meta`) -> the gateway's tool span -> the registry's RunSkill, run and step spans -> serving's RPC spans
-> the batch spans. And no token, sent in calls that succeed or fail, ever reaches a service's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mlmesh.v1 import registry_pb2, registry_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings
from services.mesh.demo.skills import demo_inputs
from tests.e2e.otlp_collector import CollectedSpan, OtlpCollector
from tests.mesh.conftest import free_port, write_topology
from tests.mesh.test_up import read_json_line

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180
TOOL_SCOPES = ("operations.read", "registry.read", "serving.read", "serving.infer", "serving.deploy", "skills.run")
GATEWAY = "mlmesh-ml-mcp"
SERVER_KIND = 2   # OTLP SPAN_KIND_SERVER
INFERENCE = {"Predict", "Classify", "Forecast", "Segment", "Analyze"}   # serving's typed interface RPCs


@dataclass
class TracedMesh:
    home: Path
    canonical: str
    registry: str
    issuer: TokenIssuer
    up_stderr: Path

    def agent_token(self, subject: str = "agent-trace") -> str:
        return self.issuer.mint(subject, self.canonical, TOOL_SCOPES)

    def logs(self) -> dict[str, str]:
        # every file there: the services' logs and the gateway's audit trail
        files = {p.name: p.read_text(errors="replace") for p in (self.home / "logs").iterdir() if p.is_file()}
        return {**files, "up.stderr": self.up_stderr.read_text(errors="replace")}


@pytest.fixture(scope="module")
def collector():
    collector = OtlpCollector().start()
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def traced_mesh(tmp_path_factory, collector) -> TracedMesh:
    root = tmp_path_factory.mktemp("traced")
    ports = {name: free_port() for name in ("registry", "serving", GATEWAY)}
    topology = write_topology(root / "topology.yaml", {
        "registry": {"module": "services.registry", "host": "127.0.0.1", "port": ports["registry"]},
        "serving": {"module": "services.serving", "host": "127.0.0.1", "port": ports["serving"]},
        GATEWAY: {"module": "services.mcp_gateway", "host": "127.0.0.1", "port": ports[GATEWAY],
                  "protocol": "http", "health": "/healthz"},
    })
    canonical = f"http://127.0.0.1:{ports[GATEWAY]}/mcp/ml"
    home = root / "home"
    env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology),
           "MLMESH_MCP_ML_CANONICAL_URI": canonical, "MLMESH_SERVING_EXECUTOR": "in_process",
           "MLMESH_SERVING_START_TRITON": "false", "MLMESH_OTLP_ENDPOINT": collector.endpoint,
           "MLMESH_LOG_FORMAT": "json", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    up_stderr = root / "up.stderr"
    with up_stderr.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--demo", "--json"], cwd=REPO,
                                   env=env, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)
    try:
        read_json_line(process, READY_TIMEOUT_S)
        issuer = TokenIssuer.from_settings(MeshSettings(home=home), AuthSettings())
        yield TracedMesh(home, canonical, f"127.0.0.1:{ports['registry']}", issuer, up_stderr)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, up_stderr.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def call_tool(mesh: TracedMesh, token: str, name: str, arguments: dict, *, meta: dict | None = None,
                    headers: dict | None = None):
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}", **(headers or {})}) as http:
        async with Client(streamable_http_client(mesh.canonical, http_client=http)) as client:
            return await client.call_tool(name, arguments, meta=meta)


def _traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def _connected(spans: list[CollectedSpan], caller_span: str) -> bool:
    ids = {s.span_id for s in spans} | {caller_span}
    return bool(spans) and all(s.parent_span_id in ids for s in spans)


def _ancestors(span: CollectedSpan, by_id: dict[str, CollectedSpan]) -> list[CollectedSpan]:
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


async def test_a_skill_run_through_the_gateway_is_one_connected_trace(traced_mesh, collector):
    trace_id, caller = "5a1e7a2ce0de4b1c9f3d2e1a0b9c8d7e", "1122334455667788"
    result = await call_tool(traced_mesh, traced_mesh.agent_token(), "data.ml.run_skill",
                             {"skill": "regime_aware_alpha", "inputs": demo_inputs()["regime_aware_alpha"]},
                             meta={"traceparent": _traceparent(trace_id, caller)})
    assert not result.is_error, result.content
    assert result.structured_content["run"]["status"] == "succeeded"
    steps = len(result.structured_content["run"]["steps"])

    def inference_of(spans: list[CollectedSpan]) -> list[CollectedSpan]:
        return [s for s in spans if s.service == "serving" and s.name.split("/")[-1] in INFERENCE]

    def complete(spans: list[CollectedSpan]) -> bool:
        # Each process exports in its own batches: wait until every step's RPCs and their batches are in.
        names = [s.name for s in spans]
        linked = {span_id for s in spans if s.name == "serving.batch" for _, span_id in s.links}
        inference = inference_of(spans)
        return (_connected(spans, caller) and "tools/call data.ml.run_skill" in names
                and names.count("skill.step") == steps and len(inference) >= steps
                and all(s.span_id in linked for s in inference))

    spans = await asyncio.to_thread(collector.wait_for, complete, 30.0, trace_id)
    assert complete(spans), sorted((s.service, s.name) for s in spans)
    assert {s.service for s in spans} == {GATEWAY, "registry", "serving"}
    by_id = {s.span_id: s for s in spans}
    (tool,) = [s for s in spans if s.name == "tools/call data.ml.run_skill"]
    assert (tool.service, tool.parent_span_id, tool.kind) == (GATEWAY, caller, SERVER_KIND)

    (run_skill,) = [s for s in spans if s.name == "mlmesh.v1.Registry/RunSkill"]
    assert run_skill.service == "registry" and tool in _ancestors(run_skill, by_id)
    assert run_skill.attributes["rpc.grpc.status_code"] == 0
    (skill_run,) = [s for s in spans if s.name == "skill.run"]
    assert by_id[skill_run.parent_span_id] is run_skill
    step_spans = [s for s in spans if s.name == "skill.step"]
    assert {by_id[s.parent_span_id].name for s in step_spans} == {"skill.run"}

    # Every inference RPC serving answered belongs to a step, and every batch to an RPC it served.
    inference = inference_of(spans)
    assert len(inference) >= steps
    assert all(any(a.name == "skill.step" for a in _ancestors(s, by_id)) for s in inference)
    batches = [s for s in spans if s.name == "serving.batch"]
    assert {by_id[b.parent_span_id].name.split("/")[-1] for b in batches} <= INFERENCE
    for batch in batches:   # the batch links the request span(s) it served, its parent among them
        assert (trace_id, batch.parent_span_id) in batch.links


async def test_the_http_traceparent_header_parents_a_tool_call_without_meta(traced_mesh, collector):
    trace_id, caller = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    result = await call_tool(traced_mesh, traced_mesh.agent_token(), "data.ml.list_models", {},
                             headers={"traceparent": _traceparent(trace_id, caller)})
    assert not result.is_error, result.content
    spans = await asyncio.to_thread(
        collector.wait_for, lambda s: any(x.service == "registry" for x in s) and _connected(s, caller), 30.0, trace_id)
    (tool,) = [s for s in spans if s.name == "tools/call data.ml.list_models"]
    assert tool.parent_span_id == caller
    assert any(s.service == "registry" and s.name == "mlmesh.v1.Registry/ListArtifacts" for s in spans)


async def test_no_token_sent_in_any_call_reaches_a_log(traced_mesh):
    mesh = traced_mesh
    agent = mesh.agent_token("agent-logs")
    other_audience = mesh.issuer.mint("agent-logs", "http://127.0.0.1:1/mcp/elsewhere", TOOL_SCOPES)
    operator = mesh.issuer.mint("operator-logs", "registry", ALL_SCOPES)
    wrong_service = mesh.issuer.mint("operator-logs", "serving", ALL_SCOPES)
    tampered = operator[:-6] + ("AAAAAA" if not operator.endswith("AAAAAA") else "BBBBBB")
    # A request id is logged verbatim when it is short and printable: a token's first 120 characters pass.
    token_as_request_id = operator[:120]
    tokens = {"agent": agent, "other_audience": other_audience, "operator": operator,
              "wrong_service": wrong_service, "tampered": tampered, "as_request_id": token_as_request_id}

    # The gateway: a tool call that works, one refused for its arguments (a token among them), and a
    # token minted for another MCP server (401 before any MCP handling).
    assert not (await call_tool(mesh, agent, "data.ml.list_models", {})).is_error
    refused = await call_tool(mesh, agent, "data.ml.run_skill",
                              {"skill": "regime_aware_alpha", "inputs": {"market_features": f"Bearer {operator}"}})
    assert refused.is_error
    with pytest.raises(Exception):   # noqa: B017 - the SDK wraps the 401 in its own error types
        await call_tool(mesh, other_audience, "data.ml.list_models", {})

    # The registry, directly: a call that works, refused tokens (wrong audience, tampered), and a failing
    # call whose request carries a token.
    async with grpc.aio.insecure_channel(mesh.registry) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)

        def metadata(token: str, rid: str):
            return (("authorization", f"Bearer {token}"), ("x-request-id", rid))

        await stub.ListSkills(registry_pb2.ListSkillsRequest(), metadata=metadata(operator, "logscan-ok"))
        for rid, token in (("logscan-audience", wrong_service), ("logscan-tampered", tampered)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ListSkills(registry_pb2.ListSkillsRequest(), metadata=metadata(token, rid))
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetSkill(registry_pb2.GetSkillRequest(ref=f"Bearer {operator}"),
                                metadata=metadata(operator, "logscan-notfound"))
        assert raised.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        await stub.ListSkills(registry_pb2.ListSkillsRequest(), metadata=metadata(operator, token_as_request_id))

    await asyncio.sleep(0.5)   # the services write their access lines as the calls end
    logs = mesh.logs()
    registry_lines = [json.loads(line) for line in logs["registry.log"].splitlines() if line.startswith("{")]
    by_request = {line["request_id"]: line for line in registry_lines if line["logger"] == "mlmesh.access"}
    # The scan saw these calls: each left its JSON access line, naming the service and the caller.
    assert {"logscan-ok", "logscan-audience", "logscan-tampered", "logscan-notfound"} <= set(by_request)
    assert by_request["logscan-ok"]["subject"] == "operator-logs"
    assert by_request["logscan-ok"]["service"] == "registry" and by_request["logscan-ok"]["level"] == "INFO"
    assert "UNAUTHENTICATED" in by_request["logscan-tampered"]["message"]
    assert any(line.get("subject") == "mlmesh-ml-mcp" for line in registry_lines)   # the gateway's own calls
    assert "[REDACTED]" in by_request   # the token sent as a request id: its access line, scrubbed

    for file, text in logs.items():
        for name, token in tokens.items():
            signature = token.rsplit(".", 1)[-1]
            assert token not in text and signature not in text, f"{name} token in {file}"
