"""The kill switch across replicas: the replica that answers HaltAll asks every other serving replica of the
topology to halt its own sessions, concurrently and under a short deadline.

Replicas are the topology's `serving` entry: `replicas: N` listen on N consecutive ports from `port` on
its host (the rule Envoy's cluster is generated from, services/mesh/envoy/config.py `replica_ports`;
serving cannot import the mesh package, so the one-line rule is repeated here). A process that is not one
of those replicas (a test server on port 0, an ad-hoc one) has no peers: it halts only itself.

Each peer is called with `this_replica_only` set, so a halt never echoes back, with the caller's
`cancel_running`, so every replica treats its running batches alike, and with serving's own
mesh token (subject "serving", scope serving.halt, the caller recorded as `obo` for audit): a caller's
token never travels. A peer that does not answer in time, refuses, or is down is reported as one
HaltResult naming it, halted=false, with the status, never dropped: an operator must see which replica
may still be serving.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer
from services.core.grpc.client import connect
from services.core.topology import ServiceEndpoint

SERVICE = "serving"
log = logging.getLogger("mlmesh.serving.fanout")


def replica_name(address: str) -> str:
    """How a replica names itself in ServingSession.replica and HaltResult.replica."""
    return f"{SERVICE}@{address}"


def replica_addresses(endpoint: ServiceEndpoint) -> list[str]:
    return [f"{endpoint.host}:{endpoint.port + i}" for i in range(endpoint.replicas)]


def peers_of(endpoint: ServiceEndpoint | None, bound_port: int) -> list[str]:
    """The other replicas' addresses, when `bound_port` is one of the topology's replicas; else none.
    Replicas of one entry share a host, so the port alone says which one this process is."""
    if endpoint is None or not 0 <= bound_port - endpoint.port < endpoint.replicas:
        return []
    return [a for a in replica_addresses(endpoint) if a != f"{endpoint.host}:{bound_port}"]


class ReplicaFanout:
    """HaltAll(this_replica_only) on every peer; `bind` is called once the port is known."""

    def __init__(self, issuer: TokenIssuer, endpoint: ServiceEndpoint | None, *, timeout_s: float = 3.0) -> None:
        self._issuer = issuer
        self._endpoint = endpoint
        self.timeout_s = timeout_s
        self.peers: list[str] = []

    def bind(self, bound_port: int) -> list[str]:
        self.peers = peers_of(self._endpoint, bound_port)
        return self.peers

    async def halt_all(self, reason: str, *, actor: str, cancel_running: bool = False,
                       time_remaining: float | None = None) -> list[serving_pb2.HaltResult]:
        """Every peer's results, in topology order. Bounded by `timeout_s` and, when the caller set a
        deadline, by most of what is left of it, so the answer gets back before the caller gives up."""
        if not self.peers:
            return []
        timeout = self.timeout_s
        if time_remaining is not None:
            timeout = max(0.05, min(timeout, time_remaining * 0.8))
        request = serving_pb2.HaltAllRequest(reason=reason, this_replica_only=True, cancel_running=cancel_running)
        replies = await asyncio.gather(*(self._halt(p, request, actor, timeout) for p in self.peers))
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
                                       error=f"replica did not confirm the halt: {error}")]
