"""deploy/compose.yaml and deploy/Dockerfile, rendered and checked (no container engine runs here)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import yaml

from services.core.topology import load_topology
from services.mesh.envoy.examples import COMPOSE_DESCRIPTOR, COMPOSE_EXAMPLE, compose_topology_raw
from tests.deploy.conftest import REPO

DEPLOY = REPO / "deploy"
TOPOLOGY = load_topology(DEPLOY / "topology.yaml")
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())     # anchors and `<<` merges resolved
SERVICES = COMPOSE["services"]
ONE_SHOT = {"minio-init"}                                           # jobs that exit: no healthcheck


def test_every_topology_service_runs_from_the_one_image_on_its_topology_port():
    for name, endpoint in TOPOLOGY.services.items():
        service = SERVICES[name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert service["command"] == ["python", "-m", endpoint.module]
        published = [f"127.0.0.1:{port}:{port}" for port in (endpoint.port, endpoint.metrics_port) if port]
        assert service["ports"] == published
    assert (DEPLOY.parent / "deploy" / "Dockerfile").is_file()    # build.context `..` is the repo root


def test_the_containers_topology_matches_the_default_one_by_name_and_port():
    raw = compose_topology_raw()["services"]
    assert set(raw) == set(TOPOLOGY.services)
    for name, endpoint in TOPOLOGY.services.items():
        assert raw[name]["port"] == endpoint.port and raw[name]["module"] == endpoint.module
        assert raw[name].get("metrics_port") == endpoint.metrics_port
        assert raw[name]["host"] == name, "containers reach each other by compose service name"
        assert raw[name].get("grpc_services", []) == endpoint.grpc_services


def test_images_are_pinned_ports_are_loopback_only_and_everything_long_running_has_a_healthcheck():
    for name, service in SERVICES.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: pin {image} by tag"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if name not in ONE_SHOT:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_the_backing_services_are_there_and_wired_through_mlmesh_settings():
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", SERVICES["triton"]["image"])
    assert SERVICES["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
    for name in TOPOLOGY.services:
        env = SERVICES[name]["environment"]
        assert env["MLMESH_DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:5432/" in env[
            "MLMESH_DATABASE_URL"]
        assert env["MLMESH_OBJECT_STORE_URL"].startswith("s3://") and env["MLMESH_S3_ENDPOINT"] == "http://minio:9000"
        assert env["MLMESH_TOPOLOGY_FILE"] == "/etc/mlmesh/topology.yaml"
        assert "keys:/var/lib/mlmesh/keys" in SERVICES[name]["volumes"], f"{name} must share the issuer key"
    serving = SERVICES["serving"]
    assert serving["environment"]["MLMESH_TRITON_URL"] == "triton:8001"
    models = serving["environment"]["MLMESH_TRITON_MODEL_REPOSITORY"]
    assert f"models:{models}" in serving["volumes"] and f"models:{models}" in SERVICES["triton"]["volumes"]
    assert any(a.startswith(f"--model-repository={models}") for a in SERVICES["triton"]["command"])


def test_envoy_runs_the_generated_compose_config_with_the_descriptor_set():
    envoy = SERVICES["envoy"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in envoy["volumes"])}
    assert (DEPLOY / mounts["/etc/envoy/envoy.yaml"]).resolve() == COMPOSE_EXAMPLE
    assert (DEPLOY / mounts[COMPOSE_DESCRIPTOR]).resolve() == REPO / "protos" / "mlmesh" / "v1" / "descriptors.pb"
    assert envoy["ports"] == ["127.0.0.1:8080:8080"]
    assert set(envoy["depends_on"]) >= set(TOPOLOGY.services)


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_is_python_311_slim_installs_the_lock_and_runs_as_a_numeric_non_root_user():
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [args for op, args in steps if op == "RUN"]
    assert any("pip install" in r and "-r requirements.lock" in r for r in runs)
    copies = [args for op, args in steps if op == "COPY"]
    assert "requirements.lock ./" in copies[0] and any(shlex.split(c)[-2:] == [".", "."] for c in copies)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert (DEPLOY / "Dockerfile.dockerignore").read_text().count(".venv") >= 1


@pytest.mark.parametrize("name", sorted(TOPOLOGY.services))
def test_each_service_module_the_image_runs_starts_and_takes_a_port(name):
    """The image's command for each service, `python -m <module>`, runs that service's entry point: with
    --help it prints the service's usage, which offers --port (the topology's port override), and exits 0."""
    command = SERVICES[name]["command"]
    assert command == ["python", "-m", TOPOLOGY.services[name].module]
    shown = subprocess.run([sys.executable, *command[1:], "--help"], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: ") and "--port PORT" in shown.stdout
