"""The kill switch across replicas found by DNS (`discovery: dns`, a Kubernetes headless Service): three real
serving replicas on one port of three loopback addresses (127.0.0.1-3, as pods share a port on their own IPs),
each naming itself by its address. HaltAll on one looks the others up at that moment and halts each; a replica
that left DNS is not asked; a lookup that fails is a row of its own, never "no other replicas".

DNS here is the one thing stood in for: the topology's host answers the three addresses through the fan-out's
`resolve` (what a headless Service's A records give), since this machine's resolver cannot be pointed at a
test zone. The real lookup (`resolve_addresses`, getaddrinfo) is tested on its own and for the failure."""

from __future__ import annotations

import socket
from contextlib import ExitStack

import grpc
import pytest
import pytest_asyncio
import yaml

from mlmesh.v1 import serving_pb2
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.errors import InvalidArgument
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.core.topology import load_topology
from services.registry.server import build_registry
from services.serving.fanout import ReplicaFanout, advertised_host, resolve_addresses
from tests.mesh.test_replicas_halt import (
    SERIES,
    Replica,
    by_replica,
    call,
    deploy,
    replica_app,
    resume_all,
    settings_with_serving,
    states,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SERVICE_HOST = "serving.mlmesh.test"      # .test never resolves: the real lookup of it fails


def port_free_on_every_host() -> int:
    for _ in range(50):
        with ExitStack() as stack:
            probe = stack.enter_context(socket.socket())
            probe.bind((HOSTS[0], 0))
            port = probe.getsockname()[1]
            try:
                for host in HOSTS[1:]:
                    stack.enter_context(socket.socket()).bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on every loopback address")


class Zone:
    """What the headless Service's DNS answers now: one A record per ready pod."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        assert host == SERVICE_HOST
        return [f"{a}:{port}" for a in self.addresses]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> MeshSettings:
    return settings_with_serving(tmp_path_factory.mktemp("replicas-dns"), {
        "host": SERVICE_HOST, "port": port_free_on_every_host(), "discovery": "dns"})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(settings):
    port = load_topology(settings.topology_file).get("serving").port
    registry = await build_registry(settings, ServerSettings(), AuthSettings())
    registry_address = f"127.0.0.1:{await registry.start('127.0.0.1', 0)}"
    zone, replicas = Zone(list(HOSTS)), []
    for host in HOSTS:
        app = await replica_app(settings, registry_address)
        app.fanout.resolve = zone.resolve
        assert await app.start(host, port) == port
        replicas.append(Replica(app, port, host))
    token = TokenIssuer.from_settings(settings, AuthSettings()).mint("operator", "serving", ALL_SCOPES)
    yield replicas, token, zone
    for replica in replicas:
        await replica.stop()
    await registry.stop(0)


async def test_halt_all_halts_every_replica_dns_answers(mesh):
    replicas, token, zone = mesh
    for i, replica in enumerate(replicas):
        assert replica.app.servicer.replica == f"serving@{replica.address}"
        await deploy(replica, f"seg-{i}", token)
        await deploy(replica, "seg-everywhere", token)

    reply = await call(replicas[1], "HaltAll", serving_pb2.HaltAllRequest(reason="drill"), token)
    assert zone.lookups == [SERVICE_HOST]   # looked up when the switch was thrown, not at start
    assert by_replica(reply) == {f"serving@{r.address}": {(f"seg-{i}", True), ("seg-everywhere", True)}
                                 for i, r in enumerate(replicas)}
    assert reply.halted == 2 * len(replicas) and not any(r.error for r in reply.results)
    assert reply.results[0].replica == f"serving@{replicas[1].address}"
    assert replicas[1].app.fanout.peers == [replicas[0].address, replicas[2].address]   # itself left out
    for i, replica in enumerate(replicas):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(replica, "Segment", serving_pb2.SegmentRequest(session_id=f"seg-{i}", series=SERIES), token)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "drill" in refused.value.details()
    await resume_all(replicas, token)


async def test_the_lookup_is_made_at_each_halt_so_pods_that_come_and_go_are_followed(mesh):
    replicas, token, zone = mesh
    zone.addresses = [HOSTS[0], HOSTS[1]]        # the third pod left the Service
    reply = await call(replicas[0], "HaltAll", serving_pb2.HaltAllRequest(reason="two"), token)
    assert set(by_replica(reply)) == {f"serving@{r.address}" for r in replicas[:2]}
    assert set((await states(replicas[2], token)).values()) == {serving_pb2.SESSION_STATE_READY}
    await resume_all(replicas, token)

    zone.addresses = list(HOSTS)                 # back again: reached again
    reply = await call(replicas[0], "HaltAll", serving_pb2.HaltAllRequest(reason="three"), token)
    assert set(by_replica(reply)) == {f"serving@{r.address}" for r in replicas}
    await resume_all(replicas, token)


async def test_a_failed_lookup_is_reported_and_this_replica_still_halts(mesh):
    """The real resolver on a name DNS does not know: the answer says the others could not be found."""
    replicas, token, zone = mesh
    replicas[2].app.fanout.resolve = resolve_addresses
    try:
        reply = await call(replicas[2], "HaltAll", serving_pb2.HaltAllRequest(reason="no dns"), token)
    finally:
        replicas[2].app.fanout.resolve = zone.resolve
    lookup = [r for r in reply.results if r.replica == f"serving@{SERVICE_HOST}:{replicas[2].port}"]
    assert len(lookup) == 1 and not lookup[0].halted and not lookup[0].session_id
    assert lookup[0].error.startswith("could not look up the other replicas: gaierror"), lookup[0].error
    mine = {(r.session_id, r.halted) for r in reply.results if r.replica == f"serving@{replicas[2].address}"}
    assert mine == {("seg-2", True), ("seg-everywhere", True)}
    for replica in replicas[:2]:   # not reached: still serving, and the answer did not pretend otherwise
        assert set((await states(replica, token)).values()) == {serving_pb2.SESSION_STATE_READY}
    await resume_all(replicas, token)


async def test_resolve_addresses_uses_the_system_resolver():
    assert await resolve_addresses("localhost", 50054) == ["127.0.0.1:50054"]
    assert await resolve_addresses("::1", 50054) == ["[::1]:50054"]     # a gRPC target with its brackets
    with pytest.raises(socket.gaierror):
        await resolve_addresses(SERVICE_HOST, 50054)


async def test_advertised_host_prefers_the_setting_then_the_bind_host_then_the_hostname():
    assert advertised_host("0.0.0.0", "10.1.2.3") == "10.1.2.3"
    assert advertised_host("127.0.0.2") == "127.0.0.2"
    wildcard = advertised_host("0.0.0.0")
    assert wildcard not in ("0.0.0.0", "") and wildcard == socket.getaddrinfo(socket.gethostname(), None)[0][4][0]


async def test_a_process_off_the_replicas_port_has_no_peers(settings):
    endpoint = load_topology(settings.topology_file).get("serving")
    fanout = ReplicaFanout(TokenIssuer.from_settings(settings, AuthSettings()), endpoint,
                           resolve=Zone(list(HOSTS)).resolve)
    assert fanout.bind(endpoint.port + 1, "127.0.0.1") == ""          # a test server, an ad-hoc one
    assert await fanout.halt_all("alone", actor="operator") == []
    assert "DNS answers" in fanout.bind(endpoint.port, "127.0.0.1")


async def test_dns_discovery_leaves_the_count_to_dns(tmp_path):
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump({"services": {"serving": {"port": 50054, "discovery": "dns", "replicas": 3}}}))
    with pytest.raises(InvalidArgument, match="replicas must be 1"):
        load_topology(topology)
    topology.write_text(yaml.safe_dump({"services": {"serving": {"port": 50054, "discovery": "srv"}}}))
    with pytest.raises(InvalidArgument, match="discovery"):
        load_topology(topology)
