"""The MCP paths through Envoy: a real gateway process (`python -m services.mcp_gateway`) behind a real Envoy;
the RFC 9728 document, the 401 challenge, and an authorised MCP session listing the data.ml.* tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings
from services.core.topology import load_topology
from services.mesh.envoy.config import EnvoyOptions
from services.mesh.envoy.process import start_envoy
from services.mesh.health import SERVING, check_health
from tests.deploy.conftest import REPO, free_port, wait_for

GATEWAY_MAIN = REPO / "services" / "mcp_gateway" / "__main__.py"
pytestmark = pytest.mark.skipif(not GATEWAY_MAIN.is_file(),
                                reason="the MCP gateway (services/mcp_gateway/__main__.py) has not landed yet")
PROTOCOL = "2025-11-25"


@pytest.fixture(scope="module")
def mesh(envoy_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("mcp")
    envoy_port, gateway_port = free_port(), free_port()
    canonical = f"http://127.0.0.1:{envoy_port}/mcp/ml"     # agents reach the gateway through Envoy
    topology_file = root / "topology.yaml"
    topology_file.write_text(yaml.safe_dump({"services": {"mlmesh-ml-mcp": {
        "module": "services.mcp_gateway", "host": "127.0.0.1", "port": gateway_port, "protocol": "http",
        "health": "/healthz"}}}))
    topology = load_topology(topology_file)
    home = root / "home"
    env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology_file),
           "MLMESH_MCP_ML_CANONICAL_URI": canonical, "PYTHONUNBUFFERED": "1"}
    log = (root / "gateway.log").open("wb")
    gateway = subprocess.Popen([sys.executable, "-m", "services.mcp_gateway"], env=env, cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    envoy = None
    try:
        wait_for(lambda: gateway.poll() is not None or check_health(topology.get("mlmesh-ml-mcp")) == SERVING,
                 30, "the gateway's /healthz")
        assert gateway.poll() is None, (root / "gateway.log").read_text()
        envoy = start_envoy(home, topology, EnvoyOptions(port=envoy_port, admin_port=free_port(),
                                                         health_interval_s=0.5), binary=envoy_bin)
        token = TokenIssuer.from_settings(MeshSettings(home=home), AuthSettings()).mint(
            "agent-7", canonical, ["registry.read"])
        yield envoy, canonical, token
    finally:
        if envoy is not None:
            envoy.stop(0.5)
        gateway.terminate()
        gateway.wait(15)
        log.close()


def call(url: str, *, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {},
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def rpc_result(text: str) -> dict:
    """A JSON-RPC reply, sent as JSON or as one SSE event."""
    lines = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(lines[-1] if lines else text)


def test_the_protected_resource_document_is_served_through_envoy(mesh):
    envoy, canonical, _ = mesh
    status, _, body = call(f"http://{envoy.address}/.well-known/oauth-protected-resource/mcp/ml")
    assert status == 200 and json.loads(body)["resource"] == canonical


def test_an_unauthenticated_mcp_call_gets_the_rfc9728_challenge_through_envoy(mesh):
    envoy, _, _ = mesh
    status, headers, _ = call(f"http://{envoy.address}/mcp/ml", method="POST", body={},
                              headers={"content-type": "application/json"})
    assert status == 401 and "resource_metadata=" in headers["www-authenticate"]


def test_an_authorised_agent_lists_the_tools_through_envoy(mesh):
    envoy, _, token = mesh
    url = f"http://{envoy.address}/mcp/ml"
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
               "accept": "application/json, text/event-stream", "mcp-protocol-version": PROTOCOL}
    status, reply_headers, body = call(url, method="POST", headers=headers, body={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    assert status == 200, body
    assert rpc_result(body)["result"]["serverInfo"]["name"] == "mlmesh-ml-mcp"
    if session := reply_headers.get("mcp-session-id"):
        headers["mcp-session-id"] = session
    call(url, method="POST", headers=headers, body={"jsonrpc": "2.0", "method": "notifications/initialized"})
    status, _, body = call(url, method="POST", headers=headers,
                           body={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert status == 200, body
    names = {tool["name"] for tool in rpc_result(body)["result"]["tools"]}
    assert "data.ml.list_models" in names and all(n.startswith("data.ml.") for n in names)
