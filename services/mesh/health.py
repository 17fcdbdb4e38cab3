"""One health probe for any mesh service: grpc.health.v1 for gRPC services, an HTTP GET for the others."""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.topology import ServiceEndpoint

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
DOWN = "DOWN"


def check_health(endpoint: ServiceEndpoint, timeout_s: float = 2.0) -> str:
    """SERVING, NOT_SERVING (it answers but is not ready, or is draining) or DOWN (nothing answers)."""
    if endpoint.health.startswith("/"):
        return _http(f"http://{endpoint.address}{endpoint.health}", timeout_s)
    return _grpc(endpoint.address, timeout_s)


def _grpc(address: str, timeout_s: float) -> str:
    # Health needs no token (the interceptor leaves it open), so a bare channel is enough.
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                             timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            # UNIMPLEMENTED or NOT_FOUND: something answers, but not a mesh service with health.
            return DOWN if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None) \
                else NOT_SERVING
    return SERVING if reply.status == health_pb2.HealthCheckResponse.SERVING else NOT_SERVING


def _http(url: str, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 - loopback, from topology
            return SERVING if 200 <= reply.status < 300 else NOT_SERVING
    except urllib.error.HTTPError:
        return NOT_SERVING
    except (urllib.error.URLError, OSError):
        return DOWN
