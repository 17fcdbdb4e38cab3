"""Operation durations and output bytes, recorded by the OperationRunner when each operation ends."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from mlmesh.v1 import common_pb2
from services.core.errors import InvalidArgument
from services.core.observability.metrics_operations import OperationMetrics
from services.core.operations import OperationRunner, OperationStore

DURATION = "mlmesh_operation_duration_seconds"


async def test_durations_by_kind_and_outcome_and_bytes_of_successes(engine):
    registry = CollectorRegistry()
    metrics = OperationMetrics(registry, {"pull": lambda artifact: artifact.total_size})
    assert registry.get_sample_value("mlmesh_operation_output_bytes_total", {"kind": "pull"}) == 0
    runner = OperationRunner(OperationStore(engine, "puller"), cancel_poll_s=0.05, metrics=metrics)
    started = asyncio.Event()

    async def pulled(reporter):
        await asyncio.sleep(0.2)
        return common_pb2.Artifact(id="sha256:" + "0" * 64, total_size=1234)

    async def refused(reporter):
        raise InvalidArgument("no", field="source")

    async def forever(reporter):
        started.set()
        await asyncio.sleep(60)

    try:
        for work in (pulled, pulled, refused):
            await runner.join((await runner.start("pull", {}, work)).id)
        long = await runner.start("pull", {}, forever)
        await started.wait()
        await runner.store.request_cancel(long.id)
        await runner.join(long.id)
    finally:
        await runner.aclose()

    def count(outcome: str) -> float | None:
        return registry.get_sample_value(f"{DURATION}_count", {"kind": "pull", "outcome": outcome})

    assert (count("succeeded"), count("failed"), count("cancelled")) == (2, 1, 1)
    assert registry.get_sample_value(f"{DURATION}_sum", {"kind": "pull", "outcome": "succeeded"}) >= 0.4
    assert registry.get_sample_value(f"{DURATION}_bucket", {"kind": "pull", "outcome": "succeeded", "le": "0.1"}) == 0
    assert registry.get_sample_value("mlmesh_operation_output_bytes_total", {"kind": "pull"}) == 2 * 1234
