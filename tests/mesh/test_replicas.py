"""Replicas under the supervisor: `replicas: N` runs N processes on port..port+N-1, each given `--port`, its
own log `<name>-<i>.log` and its own extra variables, each health-checked, reported and stopped."""

from __future__ import annotations

import socket
import textwrap

import pytest

from services.core.topology import ServiceEndpoint
from services.mesh.supervisor import ServiceFailed, Supervisor, replicas_of
from services.mesh.up import _replica_env
from tests.mesh.test_replicas_halt import consecutive_free_ports

# Answers /healthz on the port it is given; prints what it was started with.
HTTP_SERVICE = """
import argparse, os, http.server
parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
port = parser.parse_args().port
print(f"replica on {port} with REPLICA_TAG={os.environ.get('REPLICA_TAG')}", flush=True)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture
def http_service(tmp_path, monkeypatch):
    package = tmp_path / "pkgs" / "svc_http"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(HTTP_SERVICE))
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "pkgs"))
    return tmp_path


def test_a_single_process_keeps_its_name_and_port():
    endpoint = ServiceEndpoint(name="registry", module="services.registry", port=50051)
    assert replicas_of(endpoint) == [(None, endpoint)]


def test_replicas_run_on_consecutive_ports_with_their_own_logs_and_env(http_service):
    base = consecutive_free_ports(3)
    endpoint = ServiceEndpoint(name="web", module="svc_http", port=base, protocol="http", health="/healthz",
                               replicas=3)
    supervisor = Supervisor(home=http_service / "home", health_timeout_s=30,
                            replica_env=lambda service, i: {"REPLICA_TAG": f"{service}/{i}"})
    ready = []
    try:
        children = supervisor.start_all([endpoint], on_ready=ready.append)
        assert [c.name for c in children] == ["web-0", "web-1", "web-2"] and ready == children
        assert [c.endpoint.port for c in children] == [base, base + 1, base + 2]
        assert {c.service for c in children} == {"web"} and [c.replica for c in children] == [0, 1, 2]
        assert all(c.health == "SERVING" for c in children)
        for i, child in enumerate(children):
            assert child.log_path == http_service / "home" / "logs" / f"web-{i}.log"
            assert f"replica on {base + i} with REPLICA_TAG=web/{i}" in child.log_tail()
        assert supervisor.exited() is None
    finally:
        stopped = supervisor.stop_all()
    assert set(stopped) == {"web-0", "web-1", "web-2"}
    assert all(code is not None for code in stopped.values())


def test_a_busy_replica_port_fails_that_replica_and_the_started_ones_are_stopped(http_service):
    base = consecutive_free_ports(2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        endpoint = ServiceEndpoint(name="web", module="svc_http", port=base, protocol="http", health="/healthz",
                                   replicas=2)
        supervisor = Supervisor(home=http_service / "home", health_timeout_s=30)
        with pytest.raises(ServiceFailed) as failed:
            supervisor.start_all([endpoint])
        assert failed.value.name == "web-1" and "already in use" in failed.value.reason
        assert [c.name for c in supervisor.children] == ["web-0"]
        assert set(supervisor.stop_all()) == {"web-0"}


def test_each_serving_replica_gets_its_own_triton_folders_unless_one_triton_is_shared(tmp_path, monkeypatch):
    for key in ("MLMESH_TRITON_URL", "MLMESH_TRITON_MODEL_REPOSITORY", "MLMESH_TRITON_LOG_FILE"):
        monkeypatch.delenv(key, raising=False)
    env = _replica_env(tmp_path)
    assert env("serving", 1) == {"MLMESH_TRITON_MODEL_REPOSITORY": str(tmp_path / "triton" / "serving-1" / "models"),
                                 "MLMESH_TRITON_LOG_FILE": str(tmp_path / "logs" / "triton-serving-1.log")}
    assert env("registry", 1) == {}
    monkeypatch.setenv("MLMESH_TRITON_LOG_FILE", "/var/log/triton.log")   # the operator's choice stands
    assert set(env("serving", 0)) == {"MLMESH_TRITON_MODEL_REPOSITORY"}
    monkeypatch.setenv("MLMESH_TRITON_URL", "triton:8001")   # one Triton reads one repository: shared
    assert env("serving", 0) == {}
