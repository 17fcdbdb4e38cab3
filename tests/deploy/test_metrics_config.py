"""deploy/prometheus.yml scrapes what the topology says, and the Grafana dashboard queries only series the
code registers (every mlmesh_* name in its expressions is one a collector of the services exposes)."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import CollectorRegistry

from services.core.artifacts.cache import CacheStats
from services.core.lineage import LineageBus
from services.core.observability.metrics import ServiceMetrics
from services.core.observability.metrics_artifacts import CacheCollector
from services.core.observability.metrics_operations import OperationMetrics
from services.core.settings import MLSettings, ObservabilitySettings
from services.core.topology import load_topology
from services.mcp_gateway.metrics import ToolMetrics
from services.mcp_gateway.tools import all_tools
from services.mesh.envoy.config import load_envoy_options
from services.serving.metrics import SessionCollector
from services.serving.sessions.manager import SessionManager
from tests.deploy.conftest import REPO

DEPLOY = REPO / "deploy"
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana" / "mlmesh-dashboard.json").read_text())
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "info": ("_info",)}


def registered_names() -> set[str]:
    """Every series name the services' collectors expose, as PromQL sees them."""
    registry: CollectorRegistry = ServiceMetrics("any", ObservabilitySettings()).registry
    OperationMetrics(registry, {"pull": lambda m: 0})
    registry.register(CacheCollector(lambda: CacheStats(0, 0, 0, 0, 0, 0, 0, 0)))
    ToolMetrics(registry, all_tools())
    registry.register(SessionCollector(SessionManager(MLSettings(), LineageBus()), reader=lambda read: read()))
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))}


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def test_the_dashboard_queries_only_registered_series():
    known = registered_names()
    assert {"mlmesh_serving_queue_depth", "mlmesh_rpc_requests_total", "mlmesh_serving_batch_size_bucket",
            "mlmesh_mcp_tool_calls_total", "mlmesh_cache_hits_total"} <= known
    used = {name for expr in dashboard_expressions() for name in re.findall(r"\bmlmesh_[a-z0-9_]+", expr)}
    assert used and not used - known, f"not registered by any service: {sorted(used - known)}"
    assert any("envoy_" in expr for expr in dashboard_expressions())   # Envoy's own stats beside ours


def test_the_dashboard_has_the_mesh_panels_and_a_prometheus_datasource():
    rows = {p["title"] for p in DASHBOARD["panels"] if p["type"] == "row"}
    assert {"Serving load", "Batching efficiency", "Errors", "Rule trips and halts"} <= rows
    titles = " ".join(p["title"].lower() for p in DASHBOARD["panels"])
    assert "halt" in titles and "rule trips" in titles and "batch size" in titles
    assert all(p["datasource"]["type"] == "prometheus" for p in DASHBOARD["panels"] if p["type"] != "row")
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])


def test_prometheus_scrapes_every_service_on_its_topology_metrics_port_and_envoy_admin():
    topology = load_topology(DEPLOY / "topology.yaml")
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    metered = {name: e for name, e in topology.services.items() if e.metrics_port is not None}
    assert {"registry", "puller", "compiler", "serving", "mlmesh-ml-mcp"} <= set(metered)
    for name, endpoint in metered.items():
        targets = [t for c in jobs[name]["static_configs"] for t in c["targets"]]
        assert targets == [f"{endpoint.host}:{endpoint.metrics_port + i}" for i in range(endpoint.replicas)], name
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
    envoy = load_envoy_options(DEPLOY / "topology.yaml")
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"
    assert jobs["envoy"]["static_configs"][0]["targets"] == [f"{envoy.admin_host}:{envoy.admin_port}"]
    assert set(jobs) == set(metered) | {"envoy"}


def test_metrics_ports_are_distinct_from_each_other_and_from_service_ports():
    topology = load_topology(DEPLOY / "topology.yaml")
    ports = [e.port + i for e in topology.services.values() for i in range(e.replicas)]
    ports += [e.metrics_port + i for e in topology.services.values() if e.metrics_port for i in range(e.replicas)]
    assert len(ports) == len(set(ports))
