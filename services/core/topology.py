"""Service addresses from deploy/topology.yaml, with a built-in map when the file is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from services.core.errors import InvalidArgument, NotFound


class ServiceEndpoint(BaseModel):
    """One service of the mesh as the topology lists it."""

    name: str
    module: str = ""                # `python -m <module>` starts it; empty for processes mlmesh does not own
    host: str = "127.0.0.1"
    port: int = Field(gt=0, lt=65536)
    protocol: str = "grpc"          # "grpc" or "http"
    health: str = "grpc"            # "grpc" (grpc.health.v1) or an HTTP path
    grpc_services: list[str] = Field(default_factory=list)
    replicas: int = Field(1, ge=1)
    # How a service's replicas are found (serving's kill switch reaches each one): "ports" = `replicas`
    # processes on consecutive ports from `port` on `host`; "dns" = every address DNS answers for `host`,
    # each on `port`, looked up when needed (a Kubernetes headless Service: one A record per ready pod).
    discovery: Literal["ports", "dns"] = "ports"
    # Prometheus /metrics; replicas use consecutive ports from it, like their service ports. None: not served
    # unless MLMESH_METRICS_PORT says where.
    metrics_port: int | None = Field(None, gt=0, lt=65536)

    @model_validator(mode="after")
    def _dns_counts_replicas(self) -> ServiceEndpoint:
        if self.discovery == "dns" and self.replicas != 1:
            raise ValueError("replicas must be 1 (left out) with discovery: dns: DNS says how many there are")
        return self

    @property
    def replica_ports(self) -> list[int]:
        """`replicas: N` listen on N consecutive ports from `port` on `host` (the "ports" discovery)."""
        return [self.port + i for i in range(self.replicas)]

    @property
    def replica_addresses(self) -> list[str]:
        return [f"{self.host}:{port}" for port in self.replica_ports]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'http' if self.protocol == 'http' else 'grpc'}://{self.address}"


class Topology(BaseModel):
    services: dict[str, ServiceEndpoint]

    def get(self, name: str) -> ServiceEndpoint:
        try:
            return self.services[name]
        except KeyError:
            raise NotFound(f"no service {name!r} in the topology", field="service") from None


FALLBACK: dict[str, dict] = {
    "registry": {"module": "services.registry", "port": 50051, "grpc_services": ["mlmesh.v1.Registry"],
                 "metrics_port": 9451},
    "puller": {"module": "services.puller", "port": 50052, "grpc_services": ["mlmesh.v1.Puller"],
               "metrics_port": 9452},
    "compiler": {"module": "services.compiler", "port": 50053, "grpc_services": ["mlmesh.v1.Compiler"],
                 "metrics_port": 9453},
    "serving": {
        "module": "services.serving",
        "port": 50054,
        "grpc_services": ["mlmesh.v1.Serving", "inference.GRPCInferenceService"],
        "metrics_port": 9454,
    },
    "mlmesh-ml-mcp": {"module": "services.mcp_gateway", "port": 8765, "protocol": "http", "health": "/healthz",
                      "metrics_port": 9450},
    "console": {"module": "services.console", "port": 8770, "protocol": "http", "health": "/healthz"},
}


def _build(raw: dict[str, dict]) -> Topology:
    return Topology(services={name: ServiceEndpoint(name=name, **spec) for name, spec in raw.items()})


def load_topology(path: Path | None) -> Topology:
    """The topology at `path`, or the built-in map when there is no such file."""
    if path is None or not Path(path).is_file():
        return _build(FALLBACK)
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return _build(raw.get("services") or {})
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise InvalidArgument(f"bad topology file {path}: {exc}", field="topology_file") from exc


MCP_GATEWAY = "mlmesh-ml-mcp"
MCP_PATH = "/mcp/ml"


def mcp_ml_url(configured: str, topology: Topology) -> str:
    """`mcp_ml_url` when set, else the gateway's HTTP address from the topology (the seed's fallback map)."""
    if configured:
        return configured
    return topology.get(MCP_GATEWAY).url + MCP_PATH
