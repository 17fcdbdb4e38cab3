"""Envoy's static config, generated from the topology, so the front door and the services never disagree.

One listener: gRPC routed by service path, REST `/ml/*` through `grpc_json_transcoder` (the transcoded
request is then routed by its gRPC path like any other), the MCP paths to the gateway. One cluster per
service with active health checks; serving replicas are endpoints of one round-robin cluster.

Per request, Envoy does only what a route needs: the transcoder is switched off on every route that never
carries a transcoded call (KServe v2, health, reflection, MCP, console), and successful inference calls get
no access log line (the services' own policy; the stats count them). docs/design.md has the measurements.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.core.errors import InvalidArgument
from services.core.topology import Topology

REPO_ROOT = Path(__file__).resolve().parents[3]
DESCRIPTOR_SET = Path("protos/mlmesh/v1/descriptors.pb")   # relative to the repo root
REGISTRY = "registry"
KSERVE = "inference.GRPCInferenceService"
# What `kserve_direct` sends straight to Triton: the tensor calls and the read-only ones a tensor client makes
# first. Triton checks no token, so everything else of the service (model load/unload, the repository index,
# statistics, shared memory, trace and log settings) stays on serving, which checks tokens and scopes: an
# allow-list, so a method Triton adds later is not exposed by default.
KSERVE_DIRECT_METHODS = ("ModelInfer", "ModelStreamInfer", "ServerLive", "ServerReady", "ServerMetadata",
                         "ModelReady", "ModelMetadata", "ModelConfig")
KSERVE_DIRECT_CLUSTER = "kserve-direct"
# Every service serves these; behind one front door the registry answers them (operations share one database).
REGISTRY_ANSWERS = ("mlmesh.v1.Operations", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection")
TRANSCODED_PACKAGE = "mlmesh.v1."                        # the services that carry google.api.http bindings
HTTP_PREFIXES = {"services.mcp_gateway": ("/mcp/", "/.well-known/oauth-protected-resource/"),
                 "services.console": ("/console/",)}
SERVING = "serving"
# A call carrying this header goes to the one serving replica it names ("serving@host:port", as each replica
# names itself in ServingSession.replica): sessions live on one replica, so the console watches, halts and
# resumes each replica's sessions there instead of wherever round-robin lands.
REPLICA_HEADER = "x-mlmesh-replica"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# Serving's high-rate calls (its INFERENCE_METHODS): with access_log "control", only their failures are logged.
INFERENCE_PATHS = ("/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelStreamInfer",
                   *(f"/mlmesh.v1.Serving/{m}" for m in ("Predict", "Forecast", "Classify", "Segment", "Analyze")))
_T = "type.googleapis.com/envoy."


class EnvoyOptions(BaseModel):
    """The topology's optional top-level `envoy:` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, gt=0, lt=65536)
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(9901, gt=0, lt=65536)
    health_interval_s: float = Field(5.0, gt=0, description="Active health check period of every cluster.")
    stream_idle_timeout_s: float = Field(3600.0, ge=0, description="Idle limit of a stream (Watch*); 0 = none.")
    kserve_direct: str = Field("", description="host:port of Triton's gRPC: KServe v2 goes straight there.")
    access_log: Literal["all", "control"] = Field(
        "control", description="Which calls get an access log line: all = every call; control = every call "
        "except successful inference calls (KServe ModelInfer, Predict, ...), as the services log theirs.")


def envoy_options(raw: dict, source: object = "the topology") -> EnvoyOptions:
    """The `envoy:` section of a parsed topology document; defaults where it is absent."""
    try:
        return EnvoyOptions(**(raw.get("envoy") or {}))
    except (ValidationError, TypeError) as exc:
        raise InvalidArgument(f"bad envoy section in {source}: {exc}", field="envoy") from exc


def load_envoy_options(path: Path | None) -> EnvoyOptions:
    """The `envoy:` section of the topology file; defaults when the file or the section is absent."""
    if path is None or not Path(path).is_file():
        return EnvoyOptions()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"bad topology file {path}: {exc}", field="topology_file") from exc
    return envoy_options(raw, path)


def topology_wants_envoy(path: Path | None) -> bool:
    """`mlmesh up` starts Envoy when the topology file has an `envoy:` section (deploy/topology.yaml does)."""
    if path is None or not Path(path).is_file():
        return False
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError:
        return False  # load_envoy_options reports the parse error
    return isinstance(raw, dict) and "envoy" in raw


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, host: str, ports: list[int], *, grpc: bool, health: dict, interval_s: float) -> dict:
    cluster: dict[str, Any] = {
        "name": name,
        # Names (compose, Kubernetes) are resolved and re-resolved; IPs need no DNS.
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(host, p)}} for p in ports]}]},
        # Long-lived streams count as requests: the default 1024 would cap watchers and load tests.
        "circuit_breakers": {"thresholds": [{"max_requests": 100000, "max_pending_requests": 100000}]},
        "health_checks": [{
            "timeout": "1s", "interval": _duration(interval_s),
            # Checked at `interval` even while idle, so a stopped upstream is seen as soon as with traffic.
            "no_traffic_interval": _duration(interval_s),
            "unhealthy_threshold": 2, "healthy_threshold": 1, "always_log_health_check_failures": True,
            **health,
        }],
    }
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if grpc:
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _T + "extensions.upstreams.http.v3.HttpProtocolOptions",
            # Keepalive pings find a dead upstream under a quiet Watch stream.
            "explicit_http_config": {"http2_protocol_options": {
                "connection_keepalive": {"interval": "30s", "timeout": "5s"}}},
        }}
    return cluster


def _grpc_route(prefix: str, cluster: str, idle_s: float, *, exact: bool = False) -> dict:
    # No route timeout (Envoy's default 15 s would cut WatchOperation/WatchSessions); a caller's
    # grpc-timeout still bounds its call, and the idle timeout reaps abandoned streams.
    return {"match": {"path" if exact else "prefix": prefix}, "route": {
        "cluster": cluster, "timeout": "0s", "idle_timeout": _duration(idle_s),
        "max_stream_duration": {"grpc_timeout_header_max": "0s"}}}


def replica_cluster(index: int) -> str:
    return f"{SERVING}-{index}"


def _replica_routes(topology: Topology, idle_s: float) -> list[dict]:
    """Header-pinned routes to each serving replica (only when there is more than one), before the balanced ones."""
    endpoint = topology.services.get(SERVING)
    if endpoint is None or endpoint.replicas < 2:
        return []
    routes = []
    for index, port in enumerate(endpoint.replica_ports):
        for service in endpoint.grpc_services:
            route = _grpc_route(f"/{service}/", replica_cluster(index), idle_s)
            route["match"]["headers"] = [{"name": REPLICA_HEADER, "string_match": {
                "exact": f"{SERVING}@{endpoint.host}:{port}"}}]
            routes.append(route)
    return routes


def _routes(topology: Topology, options: EnvoyOptions) -> tuple[list[dict], list[str]]:
    """Routes, and the mlmesh.v1 services they reach (the ones to transcode)."""
    owner: dict[str, str] = {}
    for endpoint in topology.services.values():
        for service in endpoint.grpc_services:
            owner.setdefault(service, endpoint.name)
    if REGISTRY in topology.services:
        for service in REGISTRY_ANSWERS:
            owner.setdefault(service, REGISTRY)
    routes = _replica_routes(topology, options.stream_idle_timeout_s)
    if options.kserve_direct and KSERVE in owner:   # before the service's prefix route, which stays on serving
        routes += [_grpc_route(f"/{KSERVE}/{method}", KSERVE_DIRECT_CLUSTER, options.stream_idle_timeout_s,
                               exact=True) for method in KSERVE_DIRECT_METHODS]
    routes += [_grpc_route(f"/{service}/", cluster, options.stream_idle_timeout_s)
               for service, cluster in owner.items()]
    for endpoint in topology.services.values():
        if endpoint.protocol == "http":
            # MCP answers tool calls that follow a pull or compile as an SSE stream: no route timeout either.
            routes += [{"match": {"prefix": p}, "route": {
                "cluster": endpoint.name, "timeout": "0s", "idle_timeout": _duration(options.stream_idle_timeout_s)}}
                for p in HTTP_PREFIXES.get(endpoint.module, ())]
            if endpoint.module == "services.console":   # the bare path too: a person types /console
                routes.append({"match": {"path": "/console"}, "redirect": {"path_redirect": "/console/"}})
    transcoded = sorted(s for s in owner if s.startswith(TRANSCODED_PACKAGE))
    if transcoded:
        _skip_transcoder(routes, transcoded)
    return routes, transcoded


def _skip_transcoder(routes: list[dict], transcoded: list[str]) -> None:
    """Switch the transcoder off on the routes that never carry a transcoded call (KServe v2, health, reflection,
    MCP, console), so it does no per-request work there. A REST call matches no route until the transcoder has
    rewritten its path, so it is never affected; the routes of the transcoded services keep the filter on."""
    kept = tuple(f"/{service}/" for service in transcoded)
    for route in routes:
        prefix = route["match"].get("prefix", route["match"].get("path"))
        if prefix is not None and "route" in route and not prefix.startswith(kept):
            route["typed_per_filter_config"] = {TRANSCODER: {
                "@type": _T + "config.route.v3.FilterConfig", "disabled": True}}


def _clusters(topology: Topology, options: EnvoyOptions) -> list[dict]:
    clusters = []
    for endpoint in topology.services.values():
        grpc = endpoint.protocol == "grpc"
        health = ({"grpc_health_check": {}} if endpoint.health == "grpc" else
                  # The Host a client would send: the gateway checks Host (DNS rebinding) on its MCP paths.
                  {"http_health_check": {"path": endpoint.health, "host": endpoint.address}})
        clusters.append(_cluster(endpoint.name, endpoint.host, endpoint.replica_ports, grpc=grpc,
                                 health=health, interval_s=options.health_interval_s))
        if endpoint.name == SERVING and endpoint.replicas > 1:   # one more cluster per replica, for REPLICA_HEADER
            clusters += [_cluster(replica_cluster(i), endpoint.host, [port], grpc=grpc, health=health,
                                  interval_s=options.health_interval_s)
                         for i, port in enumerate(endpoint.replica_ports)]
    if options.kserve_direct:
        host, _, port = options.kserve_direct.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"kserve_direct must be host:port, not {options.kserve_direct!r}",
                                  field="envoy.kserve_direct")
        # Triton's gRPC port: a TCP check, as the standard gRPC health service is not guaranteed there.
        clusters.append(_cluster(KSERVE_DIRECT_CLUSTER, host, [int(port)], grpc=True,
                                 health={"tcp_health_check": {}}, interval_s=options.health_interval_s))
    return clusters


def _access_log(options: EnvoyOptions) -> dict:
    """Envoy's access log on stdout ($MLMESH_HOME/logs/envoy.log under `mlmesh up`). "control": a line for every
    call except successful inference calls, which the stats count (a line per tensor call cost ~3% of Envoy's
    instructions per call and wrote ~200 bytes of log per call)."""
    log: dict[str, Any] = {"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": _T + "extensions.access_loggers.stream.v3.StdoutAccessLog"}}
    if options.access_log == "control":
        # Logged when the call failed (a gRPC status other than OK, or one inferred from the HTTP status)
        # or when its path is not an inference method.
        log["filter"] = {"or_filter": {"filters": [
            {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}},
            {"and_filter": {"filters": [
                {"header_filter": {"header": {"name": ":path", "string_match": {"exact": path}, "invert_match": True}}}
                for path in INFERENCE_PATHS]}},
        ]}}
    return log


def render_envoy_config(topology: Topology, options: EnvoyOptions | None = None, *,
                        descriptor_set: Path | str = DESCRIPTOR_SET) -> dict:
    """Envoy's bootstrap as a dict. `descriptor_set`: as Envoy will see it (relative paths: to its cwd)."""
    options = options or EnvoyOptions()
    routes, transcoded = _routes(topology, options)
    http_filters = []
    if transcoded:
        http_filters.append({"name": TRANSCODER, "typed_config": {
            "@type": _T + "extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(descriptor_set),
            "services": transcoded,
            # A server stream (Watch*) comes as one JSON array whose elements are sent as each message
            # arrives; the console reads it incrementally, object by object (console/src/api/stream.ts).
            "print_options": {"add_whitespace": True, "always_print_primitive_fields": True},
            # A gRPC error becomes its HTTP status with a google.rpc.Status JSON body (code, message).
            "convert_grpc_status": True,
            "case_insensitive_enum_parsing": True,
            "request_validation_options": {"reject_unknown_query_parameters": True},
        }})
    http_filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": _T + "extensions.filters.http.router.v3.Router"}})
    manager = {
        "@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",                      # HTTP/1.1 for REST and MCP, h2c for gRPC
        "normalize_path": True,
        "merge_slashes": True,
        "stream_idle_timeout": _duration(options.stream_idle_timeout_s),
        "access_log": [_access_log(options)],
        "route_config": {"name": "mesh", "virtual_hosts": [{"name": "mesh", "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters,
    }
    return {
        "admin": {"address": _address(options.admin_host, options.admin_port)},
        "static_resources": {
            "listeners": [{"name": "mesh", "address": _address(options.host, options.port), "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                              "typed_config": manager}]}]}],
            "clusters": _clusters(topology, options),
        },
    }


def envoy_yaml(topology: Topology, options: EnvoyOptions | None = None, *,
               descriptor_set: Path | str = DESCRIPTOR_SET) -> str:
    body = yaml.safe_dump(render_envoy_config(topology, options, descriptor_set=descriptor_set),
                          sort_keys=False, width=120)
    return "# Generated by services/mesh/envoy/config.py from the topology; do not edit by hand.\n" + body
