"""`mlmesh up --metrics`: where Prometheus scrapes each process of the mesh (what deploy/prometheus.yml lists
for the default topology) and Envoy's own stats in Prometheus format."""

from __future__ import annotations

from typing import Any

from services.core.observability.metrics import METRICS_PATH, metrics_port_for
from services.core.settings import ObservabilitySettings
from services.mesh import output as out
from services.mesh.supervisor import ServiceProcess

ENVOY_STATS_PATH = "/stats/prometheus"
SCRAPE_CONFIG = "deploy/prometheus.yml"


def scrape_targets(children: list[ServiceProcess], envoy_admin_url: str | None,
                   settings: ObservabilitySettings | None = None) -> dict[str, Any]:
    """{"enabled", "targets": [{"name", "url"}], "not_served": [names], "envoy": url or None}."""
    settings = settings or ObservabilitySettings()
    host = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "::", "") else settings.metrics_host
    targets, not_served = [], []
    if settings.metrics_enabled:
        for child in children:   # a replica's endpoint already carries its own ports
            port = metrics_port_for(settings, child.endpoint, child.endpoint.port)
            if port:
                targets.append({"name": child.name, "url": f"http://{host}:{port}{METRICS_PATH}"})
            else:
                not_served.append(child.name)
    return {"enabled": settings.metrics_enabled, "targets": targets, "not_served": not_served,
            "envoy": envoy_admin_url + ENVOY_STATS_PATH if envoy_admin_url else None}


def print_targets(metrics: dict[str, Any]) -> None:
    con = out.console()
    if not metrics["enabled"]:
        con.print("metrics are off (MLMESH_METRICS_ENABLED=0): the services serve no /metrics", style="yellow")
    rows = [(t["name"], t["url"]) for t in metrics["targets"]]
    rows += [(name, "not served (no metrics_port in the topology)") for name in metrics["not_served"]]
    if metrics["envoy"]:
        rows.append(("envoy", metrics["envoy"]))
    con.print(out.table("Prometheus scrape targets", ["process", "url"], rows))
    con.print(f"scrape config for the default topology: {SCRAPE_CONFIG}; dashboard: deploy/grafana/", style="dim",
              markup=False)
