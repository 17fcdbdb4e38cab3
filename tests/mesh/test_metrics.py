"""Every service process serves Prometheus metrics on its topology `metrics_port`: scraped over HTTP
before and after a small load of good and bad calls, the named series move. With metrics off, no port opens."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from mlmesh.v1 import (
    compiler_pb2, compiler_pb2_grpc, operations_pb2, operations_pb2_grpc, puller_pb2, puller_pb2_grpc, registry_pb2,
    registry_pb2_grpc, serving_pb2, serving_pb2_grpc,
)
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings, ObservabilitySettings
from services.core.topology import ServiceEndpoint
from services.mesh.metrics_targets import scrape_targets
from services.mesh.supervisor import ServiceProcess, replicas_of
from tests.mesh.conftest import REPO, free_port, service_processes, wait_serving, write_topology
from tests.mesh.test_up import read_json_line
from tests.scrape import scrape

SERVICES = ("registry", "puller", "compiler", "serving")
REQUESTS = "mlmesh_rpc_requests_total"
NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT


async def _load(addresses: dict[str, str], issuer: TokenIssuer) -> None:
    """Per service: two good calls and one the service refuses with a precise status."""

    async def expect(call, code: grpc.StatusCode) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == code, exc.details()
            return
        assert code == grpc.StatusCode.OK

    def md(service: str):
        return (("authorization", f"Bearer {issuer.mint('metrics-test', service, ALL_SCOPES)}"),)

    async with grpc.aio.insecure_channel(addresses["registry"]) as channel:
        registry = registry_pb2_grpc.RegistryStub(channel)
        for _ in range(2):
            await registry.ListArtifacts(registry_pb2.ListArtifactsRequest(), metadata=md("registry"))
        await expect(registry.GetArtifact(registry_pb2.GetArtifactRequest(ref="nope"), metadata=md("registry")),
                     NOT_FOUND)
    async with grpc.aio.insecure_channel(addresses["puller"]) as channel:
        operations = operations_pb2_grpc.OperationsStub(channel)
        for _ in range(2):
            await operations.ListOperations(operations_pb2.ListOperationsRequest(), metadata=md("puller"))
        await expect(puller_pb2_grpc.PullerStub(channel).Pull(puller_pb2.PullRequest(source="ftp://x/y"),
                                                              metadata=md("puller")), INVALID)
    async with grpc.aio.insecure_channel(addresses["compiler"]) as channel:
        compiler = compiler_pb2_grpc.CompilerStub(channel)
        for _ in range(2):
            await compiler.ListCompilers(compiler_pb2.ListCompilersRequest(), metadata=md("compiler"))
        await expect(compiler.Compile(compiler_pb2.CompileRequest(artifact="x", target="bogus"),
                                      metadata=md("compiler")), INVALID)
    async with grpc.aio.insecure_channel(addresses["serving"]) as channel:
        serving = serving_pb2_grpc.ServingStub(channel)
        for _ in range(2):
            await serving.ListSessions(serving_pb2.ListSessionsRequest(), metadata=md("serving"))
        await expect(serving.Predict(serving_pb2.PredictRequest(session_id="nope", rows=[
            serving_pb2.FeatureRow(values=[1.0])]), metadata=md("serving")), NOT_FOUND)


GOOD_AND_BAD = {
    "registry": ("mlmesh.v1.Registry/ListArtifacts", "mlmesh.v1.Registry/GetArtifact", "NOT_FOUND"),
    "puller": ("mlmesh.v1.Operations/ListOperations", "mlmesh.v1.Puller/Pull", "INVALID_ARGUMENT"),
    "compiler": ("mlmesh.v1.Compiler/ListCompilers", "mlmesh.v1.Compiler/Compile", "INVALID_ARGUMENT"),
    "serving": ("mlmesh.v1.Serving/ListSessions", "mlmesh.v1.Serving/Predict", "NOT_FOUND"),
}


def test_each_service_serves_metrics_on_its_topology_port_and_the_series_move(tmp_path):
    metrics = {name: free_port() for name in SERVICES}
    env_extra = {"MLMESH_SERVING_START_TRITON": "false", "MLMESH_SERVING_EXECUTOR": "in_process"}
    with service_processes(tmp_path, SERVICES, env_extra, metrics_ports=metrics) as (env, addresses):
        urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics.items()}
        before = {name: scrape(url) for name, url in urls.items()}
        for name, samples in before.items():
            assert samples.value("mlmesh_service_info", service=name) == 1
            assert samples.value(REQUESTS, method=GOOD_AND_BAD[name][0]) == 0
        issuer = TokenIssuer.from_settings(MeshSettings(home=env["MLMESH_HOME"]), AuthSettings())
        asyncio.run(_load(addresses, issuer))
        after = {name: scrape(url) for name, url in urls.items()}

    for name, (good, bad, code) in GOOD_AND_BAD.items():
        samples = after[name]
        assert samples.value(REQUESTS, method=good, code="OK") == 2, name
        assert samples.value(REQUESTS, method=bad, code=code) == 1, name
        assert samples.value("mlmesh_rpc_duration_seconds_count", method=good) == 2, name
        assert samples.bucket("mlmesh_rpc_duration_seconds", "+Inf", method=good) == 2, name
    # what each service adds beside the RPC series, present from the start
    for name in ("puller", "serving"):
        assert "mlmesh_cache_misses_total" in after[name].names() and after[name].value("mlmesh_cache_bytes") == 0
    assert after["puller"].matching("mlmesh_operation_output_bytes_total", kind="pull")
    assert after["compiler"].matching("mlmesh_operation_output_bytes_total", kind="compile")
    assert after["serving"].value("mlmesh_serving_sessions", state="ready") == 0


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("enabled", ["0", "1"])
def test_metrics_off_opens_no_port(tmp_path, enabled):
    port, metrics_port = free_port(), free_port()
    topology = write_topology(tmp_path / "topology.yaml", {"registry": {
        "module": "services.registry", "host": "127.0.0.1", "port": port, "metrics_port": metrics_port}})
    env = {"MLMESH_HOME": str(tmp_path / "home"), "MLMESH_TOPOLOGY_FILE": str(topology),
           "MLMESH_METRICS_ENABLED": enabled}
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.registry"], cwd=REPO,
                                   env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(f"127.0.0.1:{port}", process)
        assert _listening(metrics_port) is (enabled == "1")
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_up_metrics_prints_each_scrape_target_and_it_answers(tmp_path):
    port, metrics_port, other = free_port(), free_port(), free_port()
    topology = write_topology(tmp_path / "topology.yaml", {
        "registry": {"module": "services.registry", "host": "127.0.0.1", "port": port, "metrics_port": metrics_port},
        "puller": {"module": "services.puller", "host": "127.0.0.1", "port": other},   # no metrics_port
    })
    env = {**os.environ, "MLMESH_HOME": str(tmp_path / "home"), "MLMESH_TOPOLOGY_FILE": str(topology)}
    process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--metrics", "--json"], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        report = read_json_line(process, 120)
        metrics = report["metrics"]
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert metrics == {"enabled": True, "targets": [{"name": "registry", "url": url}],
                           "not_served": ["puller"], "envoy": None}
        assert scrape(url).value("mlmesh_service_info", service="registry") == 1
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def test_serving_replicas_scrape_consecutive_metrics_ports():
    serving = ServiceEndpoint(name="serving", port=50054, replicas=3, metrics_port=9454)
    children = [ServiceProcess(e, None, Path("x.log"), 0, replica=i) for i, e in replicas_of(serving)]
    found = scrape_targets(children, "http://127.0.0.1:9901", ObservabilitySettings())
    assert found["targets"] == [{"name": f"serving-{i}", "url": f"http://127.0.0.1:{9454 + i}/metrics"}
                                for i in range(3)]
    assert found["envoy"] == "http://127.0.0.1:9901/stats/prometheus"
    off = scrape_targets(children, None, ObservabilitySettings(metrics_enabled=False))
    assert off == {"enabled": False, "targets": [], "not_served": [], "envoy": None}


def test_the_gateway_process_serves_metrics_on_its_topology_port(tmp_path):
    port, metrics_port = free_port(), free_port()
    topology = write_topology(tmp_path / "topology.yaml", {"mlmesh-ml-mcp": {
        "module": "services.mcp_gateway", "host": "127.0.0.1", "port": port, "protocol": "http",
        "health": "/healthz", "metrics_port": metrics_port}})
    env = {**os.environ, "MLMESH_HOME": str(tmp_path / "home"), "MLMESH_TOPOLOGY_FILE": str(topology)}
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.mcp_gateway"], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _listening(metrics_port):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.2)
        samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert samples.value("mlmesh_service_info", service="mlmesh-ml-mcp") == 1
        assert "mlmesh_mcp_tool_calls_total" in samples.text   # declared (HELP/TYPE) before the first call
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_gateway_whose_metrics_port_is_taken_exits_naming_the_setting(tmp_path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        topology = write_topology(tmp_path / "topology.yaml", {"mlmesh-ml-mcp": {
            "module": "services.mcp_gateway", "host": "127.0.0.1", "port": port, "protocol": "http",
            "health": "/healthz", "metrics_port": taken.getsockname()[1]}})
        env = {**os.environ, "MLMESH_HOME": str(tmp_path / "home"), "MLMESH_TOPOLOGY_FILE": str(topology)}
        done = subprocess.run([sys.executable, "-m", "services.mcp_gateway"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "mlmesh-ml-mcp: metrics_port: " in done.stderr and "cannot serve metrics" in done.stderr
    assert "Traceback" not in done.stderr
