"""`python -m services.serving` as `mlmesh up` starts it: healthy on its port with both services listed by
reflection, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.core.topology import ServiceEndpoint
from services.mesh.health import SERVING, check_health
from services.serving.triton.launcher import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=5)
        return {s.name for reply in replies for s in reply.list_services_response.service}


def test_the_service_process_starts_healthy_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLMESH_HOME": str(tmp_path / "home"), "MLMESH_SERVING_START_TRITON": "false",
           "MLMESH_TOPOLOGY_FILE": str(tmp_path / "absent.yaml")}
    proc = subprocess.Popen([sys.executable, "-m", "services.serving", "--port", str(port)], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        endpoint = ServiceEndpoint(name="serving", port=port)
        deadline = time.monotonic() + 60
        while check_health(endpoint, timeout_s=1) != SERVING:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "serving did not become healthy"
            time.sleep(0.1)
        assert {"mlmesh.v1.Serving", "inference.GRPCInferenceService"} <= _services(endpoint.address)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert b"halting every session" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
