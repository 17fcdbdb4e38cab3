"""A real Envoy with `kserve_direct` in front of a KServe v2 server (the stubs tritonclient ships, standing in
for Triton): tensor calls pass straight through on a route where the transcoder is off, and the access log
keeps a line for every call except successful inference calls, which Envoy's stats still count."""

from __future__ import annotations

import json
import urllib.parse
from concurrent import futures

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from services.core.topology import ServiceEndpoint, Topology
from services.mesh.envoy.config import KSERVE, KSERVE_DIRECT_CLUSTER, EnvoyOptions
from services.mesh.envoy.process import start_envoy
from tests.deploy.conftest import free_port

OK_CALLS = 20


class FakeTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Answers ModelInfer for model "mlp" (echoing the request id), NOT_FOUND for any other; ServerLive."""

    def ModelInfer(self, request, context):  # noqa: N802 - the generated servicer's names
        if request.model_name != "mlp":
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model_name!r}")
        return service_pb2.ModelInferResponse(model_name="mlp", id=request.id)

    def ServerLive(self, request, context):  # noqa: N802
        return service_pb2.ServerLiveResponse(live=True)


@pytest.fixture(scope="module")
def triton():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(FakeTriton(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def start(tmp_path, envoy_bin, triton: str, access_log: str):
    # Serving itself is not running: with kserve_direct its KServe calls never reach it.
    topology = Topology(services={"serving": ServiceEndpoint(
        name="serving", port=free_port(), grpc_services=["mlmesh.v1.Serving", KSERVE])})
    options = EnvoyOptions(port=free_port(), admin_port=free_port(), health_interval_s=0.5, kserve_direct=triton,
                           access_log=access_log)
    return start_envoy(tmp_path / "home", topology, options, binary=envoy_bin)


def call_through(envoy) -> None:
    with grpc.insecure_channel(envoy.address) as channel:
        kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for i in range(OK_CALLS):
            reply = kserve.ModelInfer(service_pb2.ModelInferRequest(model_name="mlp", id=f"r{i}"), timeout=10)
            assert (reply.model_name, reply.id) == ("mlp", f"r{i}")
        with pytest.raises(grpc.RpcError) as failed:
            kserve.ModelInfer(service_pb2.ModelInferRequest(model_name="missing"), timeout=10)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert kserve.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live


def upstream_requests(envoy) -> int:
    pattern = urllib.parse.quote(rf"^cluster\.{KSERVE_DIRECT_CLUSTER}\.upstream_rq_total$")
    status, body = envoy.admin(f"/stats?format=json&filter={pattern}")
    assert status == 200, body
    return sum(int(s.get("value", 0)) for s in json.loads(body)["stats"])


def access_lines(envoy, method: str) -> list[str]:
    """Access log lines of `method` (Envoy flushes its access log when it stops)."""
    return [line for line in envoy.log_tail(10_000).splitlines() if f" /{KSERVE}/{method} " in line]


def test_successful_inference_calls_are_counted_but_not_logged_and_failures_are_logged(tmp_path, envoy_bin, triton):
    envoy = start(tmp_path, envoy_bin, triton, "control")
    try:
        call_through(envoy)
        assert upstream_requests(envoy) == OK_CALLS + 2   # every call went to Triton and is in the stats
    finally:
        assert envoy.stop(1.0) == 0
    (failed,) = access_lines(envoy, "ModelInfer")
    assert " 200 " in failed   # gRPC answers HTTP 200; its status (NOT_FOUND) is what the filter saw
    assert len(access_lines(envoy, "ServerLive")) == 1   # a successful call that is not inference: logged


def test_access_log_all_keeps_a_line_for_every_call(tmp_path, envoy_bin, triton):
    envoy = start(tmp_path, envoy_bin, triton, "all")
    try:
        call_through(envoy)
    finally:
        assert envoy.stop(1.0) == 0
    assert len(access_lines(envoy, "ModelInfer")) == OK_CALLS + 1
    assert len(access_lines(envoy, "ServerLive")) == 1
