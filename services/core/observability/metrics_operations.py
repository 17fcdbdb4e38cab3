"""Durations and output bytes of a service's long operations (pull, compile, skill runs), recorded by the
OperationRunner once per operation when it ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter, Histogram

# A pull or a compile takes from a fraction of a second (cached, tiny) to many minutes (TensorRT, big repos).
OPERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

BytesOf = Callable[[Message], int]


class OperationMetrics:
    """`bytes_of` maps an operation kind to how many bytes its result holds (e.g. pull -> Artifact.total_size)."""

    def __init__(self, registry: CollectorRegistry, bytes_of: Mapping[str, BytesOf] | None = None) -> None:
        self._bytes_of = dict(bytes_of or {})
        self.duration = Histogram("mlmesh_operation_duration_seconds", "Run time of long operations, from RUNNING "
                                  "to their end, by kind and outcome.", ["kind", "outcome"],
                                  buckets=OPERATION_BUCKETS, registry=registry)
        self.output_bytes = Counter("mlmesh_operation_output_bytes", "Bytes that succeeded operations produced "
                                    "(pull: the artifact's files; compile: the compiled files), by kind.", ["kind"],
                                    registry=registry)
        for kind in self._bytes_of:
            self.output_bytes.labels(kind)  # present at 0 before the first operation

    def finished(self, kind: str, outcome: str, seconds: float, result: Message | None) -> None:
        """`outcome`: succeeded, failed, cancelled or aborted."""
        self.duration.labels(kind, outcome).observe(seconds)
        bytes_of = self._bytes_of.get(kind)
        if outcome == "succeeded" and bytes_of is not None and result is not None:
            self.output_bytes.labels(kind).inc(max(0, int(bytes_of(result))))
