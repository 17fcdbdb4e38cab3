"""The gateway as processes: `python -m services.mcp_gateway --stdio` (authenticated by MLMESH_MCP_TOKEN)
and `python -m services.mcp_gateway` (HTTP, as the supervisor starts it, health at /healthz); and the
in-process server on a real socket, reached by URL as any MCP client would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import httpx2
import pytest
from mcp import Client

from tests.mcp_gateway.conftest import ROOT, mcp_url


async def test_stdio_runs_tools_for_the_token_subject(stdio_params, agent_token, registry, serving, audit_lines,
                                                      access_log):
    async with Client(stdio_params(agent_token())) as client:
        models = await client.call_tool("data.ml.list_models", {})
        served = await client.call_tool("data_ml_serve", {"model": "m", "interface": "predictor",
                                                           "session_id": "s"})
        predicted = await client.call_tool("data.ml.predict", {"session_id": "s", "rows": [[1, 2, 3]]})
    assert models.structured_content == {"models": [], "next_page_token": ""}
    assert served.structured_content["session"]["id"] == "s"
    assert predicted.structured_content["predictions"] == [[6.0]]
    assert [r["transport"] for r in audit_lines()] == ["stdio"] * 3
    assert {r["subject"] for r in audit_lines()} == {"agent-7"}
    assert [c.principal.on_behalf_of for c in serving.calls] == ["agent-7", "agent-7"]
    assert any("sub=mlmesh-ml-mcp" in line for line in access_log.calls("/mlmesh.v1.Registry/"))


async def test_stdio_enforces_the_token_scopes(stdio_params, agent_token, serving):
    async with Client(stdio_params(agent_token(["serving.read"]))) as client:
        refused = await client.call_tool("data.ml.halt_all", {"reason": "agent"})
        listed = await client.call_tool("data.ml.list_serving", {})
    assert refused.is_error and refused.content[0].text.startswith(
        "PERMISSION_DENIED: data.ml.halt_all needs scope serving.halt")
    assert not listed.is_error and [c.method for c in serving.calls] == ["ListSessions"]


@pytest.mark.parametrize("token, reason", [
    (None, "stdio needs MLMESH_MCP_TOKEN"),
    ("audience", "token audience mismatch"),
    ("expired", "token expired"),
    ("garbage", "malformed token"),
])
def test_stdio_refuses_to_start_without_a_valid_token(stdio_params, agent_token, token, reason):
    tokens = {None: None, "audience": agent_token(audience="http://127.0.0.1:8765/mcp/data"),
              "expired": agent_token(ttl_s=-3600), "garbage": "x.y.z"}
    params = stdio_params(tokens[token])
    process = subprocess.run([params.command, *params.args], env=params.env, cwd=params.cwd, input=b"",
                             capture_output=True, timeout=60)
    assert process.returncode == 2 and reason in process.stderr.decode()
    assert process.stdout == b""   # nothing on the protocol stream


async def test_python_m_serves_http_with_health(stdio_params, agent_token, mesh_settings, tmp_path, registry):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    canonical = f"http://127.0.0.1:{port}/mcp/ml"
    env = {**stdio_params(None).env, "MLMESH_MCP_ML_CANONICAL_URI": canonical}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.mcp_gateway", "--port", str(port),
                                                   env=env, cwd=str(ROOT), stderr=subprocess.PIPE)
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx2.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway never became healthy")
            document = (await http.get("/.well-known/oauth-protected-resource/mcp/ml")).json()
            assert document["resource"] == canonical
        async with mcp_url(canonical, agent_token(audience=canonical)) as client:
            assert not (await client.call_tool("data.ml.list_skills", {})).is_error
    finally:
        process.terminate()   # SIGTERM: uvicorn drains, then re-raises the signal it caught
        assert await asyncio.wait_for(process.wait(), 20) in (0, -signal.SIGTERM)
    assert os.environ.get("MLMESH_MCP_TOKEN") is None


async def test_in_process_server_on_a_real_socket(live_gateway, issuer, registry):
    async with live_gateway() as (url, gateway):
        async with mcp_url(url, issuer.mint("agent-7", url, ["registry.read"])) as client:
            tools = (await client.list_tools()).tools
            assert len(tools) == 16
            assert not (await client.call_tool("data.ml.list_models", {})).is_error
        async with httpx2.AsyncClient() as http:
            reply = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert reply.status_code == 401
            assert reply.headers["www-authenticate"] == (
                f'Bearer resource_metadata="{url.replace("/mcp/ml", "")}/.well-known/oauth-protected-resource/mcp/ml"')
