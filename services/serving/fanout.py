"""The kill switch across replicas: the replica that answers HaltAll asks every other serving replica of the
topology to halt its own sessions, concurrently and under a short deadline.

Replicas are the topology's `serving` entry, found as its `discovery` says:
- "ports" (one machine): `replicas: N` listen on N consecutive ports from `port` on its host
  (`ServiceEndpoint.replica_addresses`, the rule Envoy's clusters and the supervisor follow too). A process
  that is not one of those replicas (a test server on port 0, an ad-hoc one) has no peers: it halts only itself.
- "dns" (Kubernetes, a headless Service): every address DNS answers for the entry's host, on its port,
  looked up at each HaltAll (pods come and go), less this replica's own advertised address. A lookup that
  fails is reported as a row naming the service, never taken for "no other replicas".

Each peer is called with `this_replica_only` set, so a halt never echoes back, with the caller's
`cancel_running`, so every replica treats its running batches alike, and with serving's own
mesh token (subject "serving", scope serving.halt, the caller recorded as `obo` for audit): a caller's
token never travels. A peer that does not answer in time, refuses, or is down is reported as one
HaltResult naming it, halted=false, with the status, never dropped: an operator must see which replica
may still be serving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

import grpc

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer
from services.core.errors import outward
from services.core.grpc.client import connect
from services.core.topology import ServiceEndpoint

SERVICE = "serving"
log = logging.getLogger("mlmesh.serving.fanout")


def replica_name(address: str) -> str:
    """How a replica names itself in ServingSession.replica and HaltResult.replica."""
    return f"{SERVICE}@{address}"


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets (as gRPC targets and replica names write it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertised_host(bind_host: str, configured: str = "") -> str:
    """The address this process is reached at: `configured`, else the bind host unless it is a wildcard,
    else the first address this machine's hostname resolves to (a pod's IP on Kubernetes)."""
    if configured:
        return configured
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    try:
        return socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return socket.gethostname()


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address DNS (or /etc/hosts) answers for `host`, as `host:port` targets, in answer order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(host_port(info[4][0], port) for info in infos))


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def peers_of(endpoint: ServiceEndpoint | None, bound_port: int) -> list[str]:
    """The other replicas' addresses, when `bound_port` is one of the topology's replicas; else none.
    Replicas of one entry share a host, so the port alone says which one this process is."""
    if endpoint is None or not 0 <= bound_port - endpoint.port < endpoint.replicas:
        return []
    return [a for a in endpoint.replica_addresses if a != f"{endpoint.host}:{bound_port}"]


class ReplicaFanout:
    """HaltAll(this_replica_only) on every peer; `bind` is called once the port is known."""

    def __init__(self, issuer: TokenIssuer, endpoint: ServiceEndpoint | None, *, timeout_s: float = 3.0,
                 resolve: Callable[[str, int], Awaitable[list[str]]] = resolve_addresses) -> None:
        self._issuer = issuer
        self._endpoint = endpoint
        self.timeout_s = timeout_s
        self.resolve = resolve
        self.peers: list[str] = []        # "ports": fixed at bind; "dns": the last lookup's
        self._me: str | None = None     # "dns": this replica's advertised host, when it is one

    @property
    def by_dns(self) -> bool:
        return self._endpoint is not None and self._endpoint.discovery == "dns"

    def bind(self, bound_port: int, host: str) -> str:
        """Records this replica's port and advertised host; says where HaltAll looks for the others."""
        if self.by_dns:   # a process on another port (a test server, an ad-hoc one) is not a replica
            self._me = host if bound_port == self._endpoint.port else None
            return (f"every other address DNS answers for {host_port(self._endpoint.host, self._endpoint.port)}"
                    if self._me else "")
        self.peers = peers_of(self._endpoint, bound_port)
        return ", ".join(self.peers)

    async def _current_peers(self, timeout: float) -> tuple[list[str], list[serving_pb2.HaltResult]]:
        """The peers to halt now, and a failure row when DNS could not say who they are."""
        if not self.by_dns or self._me is None:
            return self.peers, []
        endpoint = self._endpoint
        try:
            found = await asyncio.wait_for(self.resolve(endpoint.host, endpoint.port), timeout)
        except Exception as exc:  # noqa: BLE001 - an unresolvable name must not read as "no other replicas"
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("HaltAll could not look up the other replicas (%s): %s", endpoint.host, error)
            return [], [serving_pb2.HaltResult(
                replica=replica_name(host_port(endpoint.host, endpoint.port)), halted=False,
                error=f"could not look up the other replicas: {outward(error)}")]
        self.peers = [a for a in found if not _same_address(a.rsplit(":", 1)[0].strip("[]"), self._me)]
        if len(self.peers) == len(found):
            log.warning("this replica's advertised address %s is not among DNS's answers for %s (%s); set "
                        "MLMESH_ADVERTISE_HOST to the address they give", self._me, endpoint.host, ", ".join(found))
        return self.peers, []

    async def halt_all(self, reason: str, *, actor: str, cancel_running: bool = False,
                       time_remaining: float | None = None) -> list[serving_pb2.HaltResult]:
        """Every peer's results, in topology (or DNS answer) order. Bounded by `timeout_s` and, when the caller
        set a deadline, by most of what is left of it, so the answer gets back before the caller gives up."""
        timeout = self.timeout_s
        if time_remaining is not None:
            timeout = max(0.05, min(timeout, time_remaining * 0.8))
        started = asyncio.get_running_loop().time()
        peers, failed = await self._current_peers(timeout)
        if not peers:
            return failed
        timeout = max(0.05, timeout - (asyncio.get_running_loop().time() - started))   # the lookup's share
        request = serving_pb2.HaltAllRequest(reason=reason, this_replica_only=True, cancel_running=cancel_running)
        replies = await asyncio.gather(*(self._halt(p, request, actor, timeout) for p in peers))
        return [result for reply in replies for result in reply]

    async def _halt(self, peer: str, request: serving_pb2.HaltAllRequest, actor: str,
                    timeout: float) -> list[serving_pb2.HaltResult]:
        # A channel per call: the kill switch is rare, and a fresh dial never trusts a stale connection.
        channel = connect(peer, SERVICE, self._issuer, subject=SERVICE, scopes=(policy.SERVING_HALT,),
                          on_behalf_of=actor if actor != SERVICE else None)
        try:
            reply = await serving_pb2_grpc.ServingStub(channel).HaltAll(request, timeout=timeout)
            return list(reply.results)
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {exc.details() or 'no details'}"
        except Exception as exc:  # noqa: BLE001 - whatever failed, the replica is reported, never dropped
            error = f"{type(exc).__name__}: {exc}"
        finally:
            await channel.close()
        log.warning("HaltAll on replica %s not confirmed: %s", peer, error)
        return [serving_pb2.HaltResult(replica=replica_name(peer), halted=False,
                                       error=f"replica did not confirm the halt: {outward(error)}")]
