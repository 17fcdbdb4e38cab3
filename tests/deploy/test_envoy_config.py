"""The generated Envoy config: routes, clusters, health checks, replicas, KServe-direct, per-request work
(transcoder only where REST lands, access log policy), Envoy's own validation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from services.core.errors import InvalidArgument
from services.core.topology import ServiceEndpoint, Topology, load_topology
from services.mesh.envoy.config import (
    DESCRIPTOR_SET, INFERENCE_PATHS, REPO_ROOT, TRANSCODER, EnvoyOptions, envoy_yaml, load_envoy_options,
    render_envoy_config)
from services.mesh.envoy.examples import COMPOSE_EXAMPLE, K8S_EXAMPLE, LOCAL_EXAMPLE, render_examples
from services.mesh.envoy.process import validate_config
from services.mesh.supervisor import ServiceFailed
from services.serving.server import INFERENCE_METHODS

DEFAULT = load_topology(REPO_ROOT / "deploy" / "topology.yaml")
EXPECTED_ROUTES = {
    "/mlmesh.v1.Registry/": "registry",
    "/mlmesh.v1.Puller/": "puller",
    "/mlmesh.v1.Compiler/": "compiler",
    "/mlmesh.v1.Serving/": "serving",
    "/inference.GRPCInferenceService/": "serving",
    "/mlmesh.v1.Operations/": "registry",
    "/grpc.health.v1.Health/": "registry",
    "/grpc.reflection.v1.ServerReflection/": "registry",
    "/grpc.reflection.v1alpha.ServerReflection/": "registry",
    "/mcp/": "mlmesh-ml-mcp",
    "/.well-known/oauth-protected-resource/": "mlmesh-ml-mcp",
    "/console/": "console",
}


def manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def all_routes(config: dict) -> list[dict]:
    return manager(config)["route_config"]["virtual_hosts"][0]["routes"]


def routes(config: dict) -> dict[str, dict]:
    """By prefix, the routes every call may take (header-pinned replica routes are in `pinned`)."""
    return {r["match"]["prefix"]: r["route"] for r in all_routes(config)
            if "prefix" in r["match"] and "headers" not in r["match"]}


def pinned(config: dict) -> list[tuple[str, str, str]]:
    """(prefix, replica header value, cluster) of the header-pinned routes, in order."""
    return [(r["match"]["prefix"], r["match"]["headers"][0]["string_match"]["exact"], r["route"]["cluster"])
            for r in all_routes(config) if "headers" in r["match"]]


def clusters(config: dict) -> dict[str, dict]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def transcoder(config: dict) -> dict:
    return next(f["typed_config"] for f in manager(config)["http_filters"]
                if f["name"] == "envoy.filters.http.grpc_json_transcoder")


def ports(cluster: dict) -> list[int]:
    return [e["endpoint"]["address"]["socket_address"]["port_value"]
            for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]


def topology(**serving: object) -> Topology:
    services = {name: e.model_copy() for name, e in DEFAULT.services.items()}
    services["serving"] = ServiceEndpoint(**{**DEFAULT.services["serving"].model_dump(), **serving})
    return Topology(services=services)


def test_every_service_routes_by_its_grpc_path_and_the_mcp_paths_reach_the_gateway():
    config = render_envoy_config(DEFAULT)
    assert {p: r["cluster"] for p, r in routes(config).items()} == EXPECTED_ROUTES
    admin = config["admin"]["address"]["socket_address"]
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("127.0.0.1", 8080)
    assert (admin["address"], admin["port_value"]) == ("127.0.0.1", 9901)


def test_routes_never_cut_streams_and_grpc_honours_caller_deadlines():
    for prefix, route in routes(render_envoy_config(DEFAULT)).items():
        assert route["timeout"] == "0s", prefix             # Envoy's default 15 s would end WatchOperation
        assert route["idle_timeout"] == "3600s"             # ... and MCP's SSE progress streams
        if route["cluster"] not in ("mlmesh-ml-mcp", "console"):   # HTTP upstreams: no gRPC deadline header
            assert route["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}


def test_clusters_speak_http2_to_grpc_services_and_http1_to_the_gateway_with_active_health_checks():
    found = clusters(render_envoy_config(DEFAULT))
    assert set(found) == set(DEFAULT.services)
    for name, endpoint in DEFAULT.services.items():
        cluster = found[name]
        assert cluster["type"] == "STATIC" and ports(cluster) == [endpoint.port]
        check = cluster["health_checks"][0]
        options = cluster.get("typed_extension_protocol_options", {})
        if endpoint.protocol == "grpc":
            assert "grpc_health_check" in check
            http2 = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            assert "http2_protocol_options" in http2
        else:
            assert check["http_health_check"]["path"] == "/healthz" and not options


def test_rest_is_transcoded_from_the_committed_descriptor_set_for_every_annotated_service():
    config = transcoder(render_envoy_config(DEFAULT))
    assert config["proto_descriptor"] == str(DESCRIPTOR_SET)
    assert config["convert_grpc_status"] is True and config["print_options"]["add_whitespace"] is True
    files = descriptor_pb2.FileDescriptorSet.FromString((REPO_ROOT / DESCRIPTOR_SET).read_bytes())
    annotated = {f"{f.package}.{s.name}" for f in files.file for s in f.service
                 if any(m.options.HasExtension(annotations_pb2.http) for m in s.method)}
    assert annotated == {"mlmesh.v1.Registry", "mlmesh.v1.Puller", "mlmesh.v1.Compiler", "mlmesh.v1.Serving",
                         "mlmesh.v1.Operations"}
    assert sorted(config["services"]) == sorted(annotated)


def test_serving_replicas_are_consecutive_ports_balanced_round_robin():
    cluster = clusters(render_envoy_config(topology(replicas=3)))["serving"]
    assert ports(cluster) == [50054, 50055, 50056] and cluster["lb_policy"] == "ROUND_ROBIN"


def test_a_replica_header_pins_serving_calls_to_that_replica_before_the_balanced_route():
    config = render_envoy_config(topology(replicas=2))
    assert pinned(config) == [
        ("/mlmesh.v1.Serving/", "serving@127.0.0.1:50054", "serving-0"),
        ("/inference.GRPCInferenceService/", "serving@127.0.0.1:50054", "serving-0"),
        ("/mlmesh.v1.Serving/", "serving@127.0.0.1:50055", "serving-1"),
        ("/inference.GRPCInferenceService/", "serving@127.0.0.1:50055", "serving-1")]
    order = [r["match"].get("prefix") for r in all_routes(config)]
    assert order.index("/mlmesh.v1.Serving/") < len(pinned(config))   # Envoy takes the first match
    found = clusters(config)
    assert ports(found["serving-0"]) == [50054] and ports(found["serving-1"]) == [50055]
    assert ports(found["serving"]) == [50054, 50055]
    assert not pinned(render_envoy_config(DEFAULT))   # one replica: nothing to pin


def test_the_console_is_served_under_console_and_the_bare_path_redirects():
    config = render_envoy_config(DEFAULT)
    assert routes(config)["/console/"] == {"cluster": "console", "timeout": "0s", "idle_timeout": "3600s"}
    redirect = next(r for r in all_routes(config) if r["match"].get("path") == "/console")
    assert redirect["redirect"] == {"path_redirect": "/console/"}


def test_kserve_direct_sends_tensor_traffic_to_triton_and_typed_rpcs_to_serving():
    config = render_envoy_config(DEFAULT, EnvoyOptions(kserve_direct="127.0.0.1:8001"))
    exact = {r["match"]["path"]: r["route"]["cluster"] for r in all_routes(config) if "path" in r["match"]
             and "route" in r}
    kserve = "/inference.GRPCInferenceService/"
    for method in ("ModelInfer", "ModelStreamInfer", "ServerLive", "ServerReady", "ModelMetadata", "ModelConfig"):
        assert exact[kserve + method] == "kserve-direct"
    # Triton checks no token: model control and everything else of the service stays on serving, which does.
    for method in ("RepositoryModelLoad", "RepositoryModelUnload", "RepositoryIndex", "ModelStatistics",
                   "SystemSharedMemoryRegister", "TraceSetting", "LogSettings"):
        assert kserve + method not in exact
    assert routes(config)[kserve]["cluster"] == "serving"
    ordered = [r["match"].get("path") or r["match"].get("prefix") for r in all_routes(config)]
    assert ordered.index(kserve + "ModelInfer") < ordered.index(kserve)   # the exact routes are matched first
    assert routes(config)["/mlmesh.v1.Serving/"]["cluster"] == "serving"
    triton = clusters(config)["kserve-direct"]
    assert ports(triton) == [8001] and "tcp_health_check" in triton["health_checks"][0]
    with pytest.raises(InvalidArgument):
        render_envoy_config(DEFAULT, EnvoyOptions(kserve_direct="triton"))


def transcoder_off(route: dict) -> bool:
    config = route.get("typed_per_filter_config", {}).get(TRANSCODER)
    return config == {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}


@pytest.mark.parametrize("options", [EnvoyOptions(), EnvoyOptions(kserve_direct="127.0.0.1:8001")])
def test_the_transcoder_does_no_work_on_routes_that_never_carry_a_transcoded_call(options):
    config = render_envoy_config(topology(replicas=2), options)
    transcoded = tuple(f"/{s}/" for s in transcoder(config)["services"])
    for route in all_routes(config):
        prefix = route["match"].get("prefix", route["match"].get("path"))
        if "redirect" in route:   # the /console redirect: answered by Envoy itself
            assert "typed_per_filter_config" not in route
        elif prefix.startswith(transcoded):   # REST lands here once transcoded: the filter must stay on
            assert "typed_per_filter_config" not in route, prefix
        else:
            assert transcoder_off(route), prefix
    off = {r["match"].get("prefix", r["match"].get("path")) for r in all_routes(config) if transcoder_off(r)}
    assert {"/inference.GRPCInferenceService/", "/grpc.health.v1.Health/", "/mcp/", "/console/"} <= off
    # Header-pinned replica routes follow the same rule as the balanced ones.
    assert [transcoder_off(r) for r in all_routes(config) if "headers" in r["match"]] == [False, True, False, True]


def test_without_transcoded_services_no_route_names_the_missing_filter():
    gateway_only = Topology(services={"mlmesh-ml-mcp": DEFAULT.services["mlmesh-ml-mcp"]})
    config = render_envoy_config(gateway_only)
    assert [f["name"] for f in manager(config)["http_filters"]] == ["envoy.filters.http.router"]
    assert not any("typed_per_filter_config" in r for r in all_routes(config))


def test_the_access_log_skips_successful_inference_calls_as_the_services_do():
    assert set(INFERENCE_PATHS) == set(INFERENCE_METHODS)   # one list of the high-rate calls for the whole mesh
    (log,) = manager(render_envoy_config(DEFAULT))["access_log"]
    failed, not_inference = log["filter"]["or_filter"]["filters"]
    assert failed == {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}}
    assert [f["header_filter"]["header"] for f in not_inference["and_filter"]["filters"]] == [
        {"name": ":path", "string_match": {"exact": path}, "invert_match": True} for path in INFERENCE_PATHS]
    (everything,) = manager(render_envoy_config(DEFAULT, EnvoyOptions(access_log="all")))["access_log"]
    assert "filter" not in everything and everything["name"] == log["name"]


def test_host_names_are_resolved_by_dns(tmp_path):
    named = Topology(services={"registry": ServiceEndpoint(name="registry", host="registry", port=50051)})
    assert clusters(render_envoy_config(named))["registry"]["type"] == "STRICT_DNS"


def test_the_topology_envoy_section_sets_addresses_and_refuses_unknown_keys(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump({"envoy": {"port": 18080, "admin_port": 19901, "kserve_direct": "t:8001"},
                                    "services": {}}))
    assert load_envoy_options(path) == EnvoyOptions(port=18080, admin_port=19901, kserve_direct="t:8001")
    assert load_envoy_options(tmp_path / "absent.yaml") == EnvoyOptions()
    path.write_text(yaml.safe_dump({"envoy": {"listen_port": 1}}))
    with pytest.raises(InvalidArgument):
        load_envoy_options(path)


def test_the_committed_examples_are_what_the_generator_makes():
    for path, text in render_examples().items():
        assert path.read_text() == text, f"{path} is stale: run `python -m services.mesh.envoy.examples`"


@pytest.mark.parametrize("variant", ["default", "replicas+kserve_direct+dns", "compose", "k8s", "access_log=all"])
def test_envoy_itself_accepts_the_generated_config(variant, envoy_bin, tmp_path):
    descriptor = REPO_ROOT / DESCRIPTOR_SET
    if variant == "default":
        text = envoy_yaml(DEFAULT, descriptor_set=descriptor)
    elif variant == "compose":
        text = render_examples(descriptor_override=str(descriptor))[COMPOSE_EXAMPLE]
    elif variant == "k8s":   # the mlmesh-envoy ConfigMap's envoy.yaml
        text = yaml.safe_load(render_examples(descriptor_override=str(descriptor))[K8S_EXAMPLE])["data"]["envoy.yaml"]
    elif variant == "access_log=all":
        text = envoy_yaml(DEFAULT, EnvoyOptions(access_log="all"), descriptor_set=descriptor)
    else:
        named = topology(replicas=2, host="serving")
        text = envoy_yaml(named, EnvoyOptions(kserve_direct="triton:8001"), descriptor_set=descriptor)
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    validate_config(path, envoy_bin)


def test_validation_failures_carry_what_envoy_said(envoy_bin, tmp_path):
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_yaml(DEFAULT, descriptor_set=tmp_path / "missing.pb"))
    with pytest.raises(ServiceFailed) as failed:
        validate_config(path, envoy_bin)
    assert "missing.pb" in failed.value.log_tail


def test_the_local_example_validates_from_the_repo_root(envoy_bin):
    # It names the descriptor set relative to the repo: Envoy started there (as the example says) finds it.
    result = subprocess.run([str(envoy_bin), "--mode", "validate", "-c", str(LOCAL_EXAMPLE.relative_to(REPO_ROOT)),
                             "--disable-hot-restart", "-l", "warn"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(REPO_ROOT / DESCRIPTOR_SET).is_file()
