"""Every call has a deadline; only idempotent calls are retried, and only on UNAVAILABLE, with backoff
inside the same deadline (a retry never outlives the time the caller gave the call)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from mlmesh.errors import from_rpc_error

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
RETRY_BASE_S = 0.05
RETRY_MAX_S = 1.0


def call(method: Callable[..., T], request: Any, *, metadata: tuple, timeout_s: float, idempotent: bool) -> T:
    """`method(request)` with a deadline of `timeout_s`; an idempotent call is retried on UNAVAILABLE until then."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        try:
            return method(request, timeout=max(left, 0.001), metadata=metadata)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            pause = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** attempt) * (0.5 + random.random() / 2)
            if not idempotent or exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + pause >= deadline:
                raise error from None
            attempt += 1
            time.sleep(pause)
