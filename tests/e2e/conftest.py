"""The whole mesh as a user starts it: `mlmesh up --json` in a subprocess on free ports (a temporary
MLMESH_HOME and topology, two serving replicas, Envoy in front), the puller pointed at a local Hugging Face
hub. Stopped with SIGINT at the end, as Ctrl-C would, and checked to stop cleanly."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save as safetensors_save

from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings
from tests.mesh.conftest import free_port
from tests.mesh.test_replicas_halt import consecutive_free_ports
from tests.puller.hub import LocalHub

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180      # six Python services and Envoy, one after another, on a shared 2-core CI machine
HF_REPO = "org/tiny-mlp"
SERVICES = ("registry", "puller", "compiler", "serving", "mlmesh-ml-mcp")


@dataclass
class Mesh:
    home: Path
    envoy: str                          # host:port: the only address the flow talks to
    canonical: str                      # the MCP resource: the gateway as reached through Envoy
    serving_replicas: list[str]         # host:port of each replica (only the final refusal check dials them)
    report: dict
    hub: LocalHub
    issuer: TokenIssuer = field(repr=False)

    def token(self, audience: str) -> str:
        return self.issuer.mint("e2e-operator", audience, ALL_SCOPES)

    def metadata(self, audience: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(audience)}"),)


def _read_json_line(process: subprocess.Popen, timeout_s: float, errors: Path) -> dict:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = process.stdout.readline()
            if line:
                return json.loads(line)
        if process.poll() is not None:
            break
    pytest.fail(f"mlmesh up was not ready within {timeout_s}s (exit {process.poll()}):\n{errors.read_text()}")


def _topology(path: Path) -> tuple[dict, list[int]]:
    serving = consecutive_free_ports(2)
    ports = {name: free_port() for name in ("registry", "puller", "compiler", "mlmesh-ml-mcp", "envoy", "admin")}
    grpc_entry = lambda module, port, services: {  # noqa: E731
        "module": module, "host": "127.0.0.1", "port": port, "grpc_services": services}
    topology = {
        "services": {
            "registry": grpc_entry("services.registry", ports["registry"], ["mlmesh.v1.Registry"]),
            "puller": grpc_entry("services.puller", ports["puller"], ["mlmesh.v1.Puller"]),
            "compiler": grpc_entry("services.compiler", ports["compiler"], ["mlmesh.v1.Compiler"]),
            "serving": {**grpc_entry("services.serving", serving,
                                     ["mlmesh.v1.Serving", "inference.GRPCInferenceService"]), "replicas": 2},
            "mlmesh-ml-mcp": {"module": "services.mcp_gateway", "host": "127.0.0.1", "port": ports["mlmesh-ml-mcp"],
                              "protocol": "http", "health": "/healthz"},
        },
        "envoy": {"host": "127.0.0.1", "port": ports["envoy"], "admin_port": ports["admin"], "health_interval_s": 0.5},
    }
    path.write_text(yaml.safe_dump(topology, sort_keys=False))
    return topology, [serving, serving + 1]


def _hub() -> LocalHub:
    """A small model repo as Hugging Face serves it: a config and safetensors weights (LFS)."""
    hub = LocalHub().start()
    weights = {"net.0.weight": torch.randn(8, 6, generator=torch.Generator().manual_seed(0)),
               "net.0.bias": torch.zeros(8)}
    hub.add_commit(HF_REPO, {"config.json": b'{"architectures": ["TinyMLP"], "hidden": 8}',
                             "model.safetensors": safetensors_save(weights), "README.md": b"# tiny mlp"},
                   tags=("v1",))
    return hub


@pytest.fixture(scope="package")   # one `mlmesh up` for every module here that takes it (it costs a minute)
def mesh(tmp_path_factory) -> Mesh:
    root = tmp_path_factory.mktemp("e2e")
    home, topology_file = root / "home", root / "topology.yaml"
    topology, serving_ports = _topology(topology_file)
    front = topology["envoy"]
    canonical = f"http://127.0.0.1:{front['port']}/mcp/ml"
    hub = _hub()
    env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology_file),
           "MLMESH_PULLER_HF_ENDPOINT": hub.url, "MLMESH_MCP_ML_CANONICAL_URI": canonical,
           # In-process executors: CI has no Triton, and the replicas' answers must not depend on one.
           "MLMESH_SERVING_EXECUTOR": "in_process", "MLMESH_SERVING_START_TRITON": "false"}
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):   # the puller must reach the local hub, whatever
        env.pop(key, None)                                    # other tests left in this process's environment
    errors = root / "up.stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--json"], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)
    try:
        report = _read_json_line(process, READY_TIMEOUT_S, errors)
        issuer = TokenIssuer.from_settings(MeshSettings(home=home), AuthSettings())
        yield Mesh(home, f"127.0.0.1:{front['port']}", canonical, [f"127.0.0.1:{p}" for p in serving_ports],
                   report, hub, issuer)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, errors.read_text()
        stopped = json.loads(process.stdout.readline())["stopped"]
        assert set(stopped) == {"envoy", "registry", "puller", "compiler", "serving-0", "serving-1", "mlmesh-ml-mcp"}
        assert all(code == 0 for code in stopped.values()), stopped   # every process drains and exits 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        hub.stop()
