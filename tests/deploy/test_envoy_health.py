"""Envoy's active health checks and its process: a stopped upstream is marked unhealthy (gRPC and HTTP
checks), a recovered one healthy again; the wrapper refuses a busy port and stops Envoy cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from mlmesh.v1 import compiler_pb2, compiler_pb2_grpc
from services.core.topology import ServiceEndpoint, Topology
from services.mesh.envoy.config import EnvoyOptions
from services.mesh.envoy.process import start_envoy
from services.mesh.supervisor import ServiceFailed
from tests.deploy.conftest import REPO, free_port, wait_for


class HealthOnly:
    """A gRPC server that serves only grpc.health.v1 (enough for Envoy's checks), restartable on its port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: grpc.Server | None = None

    def start(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0).wait()
            self.server = None


class Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(Healthz.status if self.path == "/healthz" else 404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def upstreams():
    grpc_upstream = HealthOnly(free_port())
    grpc_upstream.start()
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    Healthz.status = 200
    yield grpc_upstream, http_server.server_address[1]
    grpc_upstream.stop()
    http_server.shutdown()
    http_server.server_close()


@pytest.fixture
def envoy(upstreams, envoy_bin, tmp_path):
    grpc_upstream, http_port = upstreams
    topology = Topology(services={
        "compiler": ServiceEndpoint(name="compiler", port=grpc_upstream.port, grpc_services=["mlmesh.v1.Compiler"]),
        "mlmesh-ml-mcp": ServiceEndpoint(name="mlmesh-ml-mcp", module="services.mcp_gateway", port=http_port,
                                         protocol="http", health="/healthz"),
    })
    options = EnvoyOptions(port=free_port(), admin_port=free_port(), health_interval_s=0.2)
    process = start_envoy(tmp_path / "home", topology, options, binary=envoy_bin)
    yield process
    process.stop(0.5)


def health_flags(envoy, cluster: str) -> str:
    status, body = envoy.admin("/clusters")
    assert status == 200
    return next(line.rsplit("::", 1)[1] for line in body.splitlines()
                if line.startswith(f"{cluster}::") and "::health_flags::" in line)


def test_a_stopped_grpc_upstream_is_marked_unhealthy_and_recovers(envoy, upstreams):
    grpc_upstream, _ = upstreams
    wait_for(lambda: health_flags(envoy, "compiler") == "healthy", 10, "compiler healthy")
    grpc_upstream.stop()
    wait_for(lambda: "failed_active_hc" in health_flags(envoy, "compiler"), 10, "compiler marked unhealthy")
    with grpc.insecure_channel(envoy.address) as channel, pytest.raises(grpc.RpcError) as failed:
        compiler_pb2_grpc.CompilerStub(channel).ListCompilers(compiler_pb2.ListCompilersRequest(), timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    grpc_upstream.start()
    wait_for(lambda: health_flags(envoy, "compiler") == "healthy", 10, "compiler healthy again")


def test_an_http_upstream_failing_healthz_is_marked_unhealthy(envoy):
    wait_for(lambda: health_flags(envoy, "mlmesh-ml-mcp") == "healthy", 10, "gateway healthy")
    Healthz.status = 503
    wait_for(lambda: "failed_active_hc" in health_flags(envoy, "mlmesh-ml-mcp"), 10, "gateway marked unhealthy")


def test_the_wrapper_logs_refuses_a_busy_port_and_stops_cleanly(envoy, envoy_bin, tmp_path):
    busy = EnvoyOptions(port=envoy.options.port, admin_port=free_port())
    with pytest.raises(ServiceFailed, match="already in use"):
        start_envoy(tmp_path / "other", Topology(services={}), busy, binary=envoy_bin)
    assert envoy.config.is_file() and envoy.config.parent.name == "envoy"
    assert envoy.stop(0.5) == 0
    assert envoy.log_path.name == "envoy.log" and envoy.log_path.parent.name == "logs"
    assert "starting main dispatch loop" in envoy.log_path.read_text()


def test_envoy_dies_with_a_killed_parent(envoy_bin, tmp_path):
    """`mlmesh up` killed outright must not leave Envoy holding the front door's port."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from services.core.topology import Topology\n"
        "from services.mesh.envoy.config import EnvoyOptions\n"
        "from services.mesh.envoy.process import start_envoy\n"
        f"e = start_envoy(Path({str(tmp_path)!r}), Topology(services={{}}), "
        f"EnvoyOptions(port={free_port()}, admin_port={free_port()}), binary=Path({str(envoy_bin)!r}))\n"
        "print(e.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        envoy_pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    try:
        wait_for(lambda: not Path(f"/proc/{envoy_pid}").exists() or
                 Path(f"/proc/{envoy_pid}/stat").read_text().split()[2] == "Z", 10, "Envoy to exit")
    except AssertionError:
        os.kill(envoy_pid, signal.SIGKILL)   # leave no orphan behind a failed test
        raise
