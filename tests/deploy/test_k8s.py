"""deploy/k8s: built with a minimal kustomize (cross-checked with `kubectl kustomize` where kubectl exists)
and validated against the Kubernetes schemas (kubernetes-validate, offline); names, ports and probes
match the topology; every pod runs non-root without privilege escalation and with resources set."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from services.core.topology import load_topology
from services.mesh.envoy.examples import K8S_DESCRIPTOR
from tests.deploy.conftest import REPO
from tests.deploy.kustomize import build, find

K8S = REPO / "deploy" / "k8s"
BASE, OVERLAY = K8S / "base", K8S / "overlays" / "scaled-serving"
TOPOLOGY = load_topology(REPO / "deploy" / "topology.yaml")
KUBERNETES_VERSION = "1.32"       # grpc probes are GA since 1.27


@pytest.fixture(scope="module", params=[BASE, OVERLAY], ids=["base", "scaled-serving"])
def objects(request) -> list[dict]:
    return build(request.param)


def pod(objects: list[dict], name: str) -> dict:
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def test_every_object_is_valid_against_the_kubernetes_schemas(objects):
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_each_topology_service_has_a_deployment_and_service_on_its_port(objects):
    for name, endpoint in TOPOLOGY.services.items():
        container = next(c for c in pod(objects, name)["containers"] if c["name"] == name)
        assert container["command"] == ["python", "-m", endpoint.module]
        metrics = [endpoint.metrics_port] if endpoint.metrics_port else []
        assert [p["containerPort"] for p in container["ports"]] == [endpoint.port, *metrics]
        if metrics:   # scraped per pod (every serving replica), on the port the topology names
            annotations = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
            assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(endpoint.metrics_port),
                                   "prometheus.io/path": "/metrics"}
        service = find(objects, "Service", name)
        assert [p["port"] for p in service["spec"]["ports"]] == [endpoint.port]
        assert service["spec"]["selector"] == find(objects, "Deployment", name)["spec"]["selector"]["matchLabels"]


def test_grpc_services_have_native_grpc_probes_and_the_gateway_http_ones(objects):
    for name, endpoint in TOPOLOGY.services.items():
        container = pod(objects, name)["containers"][0]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]
            if endpoint.health == "grpc":
                assert probe["grpc"] == {"port": endpoint.port}, (name, kind)
            else:
                assert probe["httpGet"]["path"] == endpoint.health, (name, kind)


def test_pods_run_non_root_without_privilege_escalation_and_with_resources(objects):
    for name in [*TOPOLOGY.services, "envoy"]:
        spec = pod(objects, name)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            image, _, tag = container["image"].rpartition(":")
            assert image and tag and tag != "latest"


def test_config_comes_from_configmaps_and_the_topology_names_every_service(objects):
    env = find(objects, "ConfigMap", "mlmesh-env")["data"]
    assert env["MLMESH_TOPOLOGY_FILE"] == "/etc/mlmesh/topology.yaml"
    topology = yaml.safe_load(find(objects, "ConfigMap", "mlmesh-topology")["data"]["topology.yaml"])["services"]
    assert set(topology) == set(TOPOLOGY.services)
    for name, endpoint in TOPOLOGY.services.items():
        assert topology[name]["host"] == name and topology[name]["port"] == endpoint.port
        assert topology[name].get("metrics_port") == endpoint.metrics_port
        spec = pod(objects, name)
        refs = [e["configMapRef"]["name"] for e in spec["containers"][0]["envFrom"] if "configMapRef" in e]
        assert refs == ["mlmesh-env"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["topology"]["configMap"]["name"] == "mlmesh-topology"


def test_the_overlay_scales_serving_only_and_patches_its_resources():
    base, scaled = build(BASE), build(OVERLAY)
    for name in TOPOLOGY.services:
        replicas = find(scaled, "Deployment", name)["spec"]["replicas"]
        assert replicas == (3 if name == "serving" else find(base, "Deployment", name)["spec"]["replicas"])
    container = pod(scaled, "serving")["containers"][0]
    assert container["resources"]["limits"]["memory"] == "8Gi"
    assert container["readinessProbe"] == pod(base, "serving")["containers"][0]["readinessProbe"], \
        "the patch merges into the container; it does not replace it"
    assert find(scaled, "Service", "serving")["spec"]["clusterIP"] == "None"


def test_serving_replicas_find_each_other_through_the_headless_service(objects):
    """The kill switch reaches every pod: serving's topology entry is looked up in DNS (the headless Service
    answers each ready pod), and each pod advertises its own IP so it can tell itself among the answers."""
    topology = yaml.safe_load(find(objects, "ConfigMap", "mlmesh-topology")["data"]["topology.yaml"])["services"]
    assert topology["serving"]["discovery"] == "dns" and "replicas" not in topology["serving"]
    assert find(objects, "Service", "serving")["spec"]["clusterIP"] == "None"
    env = {e["name"]: e for e in pod(objects, "serving")["containers"][0]["env"]}
    assert env["MLMESH_ADVERTISE_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
@pytest.mark.parametrize("root", [BASE, OVERLAY], ids=["base", "scaled-serving"])
def test_the_minimal_kustomize_agrees_with_kubectl_kustomize(root):
    result = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    real = sorted((o for o in yaml.safe_load_all(result.stdout) if o), key=key)
    assert real == sorted(build(root), key=key)


def test_envoy_fronts_every_service_with_the_generated_config(objects):
    """The front door runs the mlmesh image's Envoy on the generated mlmesh-envoy ConfigMap (kept fresh by
    test_envoy_config), listens where its Service points, and routes to each service's Service name and port."""
    container = pod(objects, "envoy")["containers"][0]
    assert container["command"][:3] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]
    # The descriptor set the config names is the repo's, where the Dockerfile copies the repo (not ignored).
    dockerfile, ignored = (REPO / "deploy" / "Dockerfile").read_text(), (REPO / "deploy" / "Dockerfile.dockerignore")
    assert "WORKDIR /app" in dockerfile and "COPY --chown=root:root . ." in dockerfile
    descriptor = K8S_DESCRIPTOR.removeprefix("/app/")
    assert (REPO / descriptor).is_file()
    patterns = [p.strip() for p in ignored.read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert not [p for p in patterns if fnmatch.fnmatch(descriptor, p) or descriptor.startswith(p.rstrip("/") + "/")]
    volumes = {v["name"]: v for v in pod(objects, "envoy")["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/envoy")
    assert volumes[mount["name"]]["configMap"]["name"] == "mlmesh-envoy"
    config = yaml.safe_load(find(objects, "ConfigMap", "mlmesh-envoy")["data"]["envoy.yaml"])
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener == {"address": "0.0.0.0", "port_value": container["ports"][0]["containerPort"]}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"   # drain/quit stay in the pod
    service = find(objects, "Service", "envoy")["spec"]
    assert service["ports"][0]["targetPort"] == container["ports"][0]["name"]
    topology = yaml.safe_load(find(objects, "ConfigMap", "mlmesh-topology")["data"]["topology.yaml"])["services"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, spec in topology.items():
        endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert endpoint["socket_address"] == {"address": spec["host"], "port_value": spec["port"]}, name
        assert clusters[name]["type"] == "STRICT_DNS"   # serving's headless Service: every pod an endpoint
