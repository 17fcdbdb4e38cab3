"""`mlmesh up --demo` end to end: a real process tree on free ports, checked over gRPC and grpcurl, then SIGINT."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from google.protobuf.json_format import MessageToDict
from typer.testing import CliRunner

from mlmesh.v1 import registry_pb2
from services.core.artifacts.manifest import parse_manifest
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_READ, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.lineage import LineageBus
from services.core.models.architectures import load_module
from services.mesh.cli import app
from services.mesh.client import MeshClient
from services.mesh.demo.seed import seed
from services.mesh.output import run
from tests.mesh.conftest import REPO, SEED_MODELS, make_mesh_env

READY_TIMEOUT_S = 150   # training is ~5 s on an idle 2-core machine; shared CI machines are not idle


def read_json_line(process: subprocess.Popen, timeout_s: float) -> dict:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = process.stdout.readline()
            if not line:
                break
            return json.loads(line)
        assert process.poll() is None, f"mlmesh up exited early: {process.stderr.read()}"
    pytest.fail(f"mlmesh up printed nothing within {timeout_s}s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but still answers kill(0); its parent (mlmesh) reaps it.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def registry_contents(client: MeshClient) -> tuple[dict[str, list[str]], dict[str, str]]:
    async with client.registry() as registry:
        artifacts = {}
        for name in SEED_MODELS:
            artifact = await registry.GetArtifact(registry_pb2.GetArtifactRequest(ref=f"{name}@prod"))
            artifacts[name] = list(artifact.aliases)
        skills = (await registry.ListSkills(registry_pb2.ListSkillsRequest())).skills
    return artifacts, {s.name: s.latest_version for s in skills}


async def load_demo_artifact(client: MeshClient, ref: str):
    """The artifact as serving will see it: fetched, every check passed, the module rebuilt from its spec."""
    async with client.registry() as registry:
        artifact = await registry.GetArtifact(registry_pb2.GetArtifactRequest(ref=ref))
    kit = build_artifact_toolkit(client.mesh, LineageBus(), service="test", write_scope=REGISTRY_WRITE,
                                 read_scope=REGISTRY_READ)
    token = set_principal(Principal("test", frozenset(ALL_SCOPES), "registry", "t", time.time() + 60))
    try:
        loaded = await kit.loader.load(parse_manifest(MessageToDict(artifact.manifest, preserving_proto_field_name=True)),
                                       artifact.signature.bundle, expected_id=artifact.id)
    finally:
        reset_principal(token)
    return artifact, load_module(loaded.metadata["architecture"], loaded.state_dict)


def test_up_demo_end_to_end(tmp_path, monkeypatch, grpcurl):
    mesh = make_mesh_env(tmp_path)
    env = {**os.environ, **mesh.env}
    process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--demo", "--json"], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = read_json_line(process, READY_TIMEOUT_S)
        (registry,) = ready["services"]
        assert registry["service"] == "registry" and registry["address"] == mesh.address
        assert registry["health"] == "SERVING" and pid_alive(registry["pid"])
        assert registry["log_file"] == str(mesh.home / "logs" / "registry.log")
        assert "Bearer $(mlmesh token --aud registry)" in ready["grpcurl"]

        demo = ready["demo"]
        assert [a["name"] for a in demo["artifacts"]] == list(SEED_MODELS)
        assert {s["name"] for s in demo["skills"]} == {"regime_aware_alpha", "multi_horizon_forecast"}
        assert all(s["created"] for s in demo["skills"])

        for key, value in mesh.env.items():
            monkeypatch.setenv(key, value)
        artifacts, skills = run(registry_contents(MeshClient()))
        assert all(f"{name}@prod" in aliases for name, aliases in artifacts.items())
        assert skills == {s["name"]: s["version"] for s in demo["skills"]}
        # Weights and their sidecars landed in the default object store, and each artifact loads verified.
        stored = {p.name for p in (mesh.home / "objects" / "sha256").iterdir()}
        assert len(stored) == 3 * len(SEED_MODELS)  # weights, sidecar, signature bundle
        loaded = run(load_demo_artifact(MeshClient(), "regime_classifier@prod"))
        assert {f.sha256 for f in loaded[0].manifest.files} <= stored
        assert loaded[1](torch.zeros(1, len(loaded[0].manifest.metadata["feature_names"]))).shape == (1, 3)

        listed = subprocess.run([grpcurl, "-plaintext", mesh.address, "list"], capture_output=True, text=True,
                                timeout=30)
        assert listed.returncode == 0, listed.stderr
        assert {"mlmesh.v1.Registry", "grpc.health.v1.Health"} <= set(listed.stdout.split())
        # The printed token works as the README says.
        called = subprocess.run([grpcurl, "-plaintext", "-H", f"authorization: Bearer {ready['operator_token']}",
                                 mesh.address, "mlmesh.v1.Registry/ListSkills"],
                                capture_output=True, text=True, timeout=30)
        assert called.returncode == 0 and "regime_aware_alpha" in called.stdout, called.stderr

        # Idempotent: seeding again (another process, so other hash seeds) changes nothing.
        again = run(seed(MeshClient(), None))
        assert [a.id for a in again.artifacts] == [a["id"] for a in demo["artifacts"]]
        assert [(r.version.version, r.created) for r in again.skills] == \
            [(s["version"], False) for s in demo["skills"]]

        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert json.loads(stdout.strip().splitlines()[-1]) == {"stopped": {"registry": 0}}
        assert not pid_alive(registry["pid"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def up_env(tmp_path, monkeypatch):
    mesh = make_mesh_env(tmp_path)
    for key, value in mesh.env.items():
        monkeypatch.setenv(key, value)
    return mesh


def test_up_fails_clearly_when_a_service_crashes(up_env, monkeypatch):
    monkeypatch.setenv("MLMESH_DATABASE_URL", "nosuchdb+driver:///nowhere")
    result = CliRunner().invoke(app, ["up", "--health-timeout", "60"])
    assert result.exit_code == 1, result.output
    assert "registry: exited with code" in result.stderr
    assert f"last lines of {up_env.home / 'logs' / 'registry.log'}" in result.stderr
    assert "nosuchdb" in result.stderr   # the service's own complaint, from its log


def test_up_refuses_a_busy_port(up_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", up_env.port))
        busy.listen()
        result = CliRunner().invoke(app, ["up", "--json"])
    assert result.exit_code == 1
    assert "already in use" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"stopped": {}}


def test_up_needs_something_to_start(up_env):
    up_env.topology.write_text("services:\n  later: {module: services.not_built_yet, port: 1234}\n")
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 1 and "no service of the topology can be started" in result.stderr


def _up(env: dict[str, str]) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--json"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, read_json_line(process, READY_TIMEOUT_S)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_ctrl_c_then_up_again_at_once(tmp_path):
    """The HTTP connections of the last run (Envoy's, the gateway's) sit in TIME_WAIT on their ports for a
    minute after a Ctrl-C; `mlmesh up` must start again at once all the same, and serve."""
    import http.client

    from tests.mesh.conftest import free_port, write_topology

    ports = {name: free_port() for name in ("registry", "gateway", "envoy", "admin")}
    topology = write_topology(tmp_path / "topology.yaml", {
        "registry": {"module": "services.registry", "host": "127.0.0.1", "port": ports["registry"],
                     "grpc_services": ["mlmesh.v1.Registry"]},
        "mlmesh-ml-mcp": {"module": "services.mcp_gateway", "host": "127.0.0.1", "port": ports["gateway"],
                          "protocol": "http", "health": "/healthz"},
    }, envoy={"host": "127.0.0.1", "port": ports["envoy"], "admin_port": ports["admin"], "health_interval_s": 0.5})
    env = {**os.environ, "MLMESH_HOME": str(tmp_path / "home"), "MLMESH_TOPOLOGY_FILE": str(topology),
           "MLMESH_MCP_ML_CANONICAL_URI": f"http://127.0.0.1:{ports['envoy']}/mcp/ml"}
    metadata_path = "/.well-known/oauth-protected-resource/mcp/ml"
    for attempt in range(2):
        process, ready = _up(env)
        try:
            assert {s["service"] for s in ready["services"]} >= {"registry", "mlmesh-ml-mcp"}, ready
            kept = http.client.HTTPConnection("127.0.0.1", ports["envoy"], timeout=10)   # left open: keep-alive
            kept.request("GET", metadata_path)
            reply = kept.getresponse()
            assert reply.status == 200 and b"resource" in reply.read(), attempt
            _stop(process)
            kept.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
