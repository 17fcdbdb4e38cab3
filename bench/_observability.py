"""bench/serving.py section 6: what metrics and tracing cost. Three more serving processes beside the bench's
mesh (same registry and home, their own ports): MLMESH_METRICS_ENABLED=0 MLMESH_TRACING_ENABLED=0 ("off"),
metrics alone ("metrics": /metrics served and scraped every second), and both on ("on": spans recorded
too). They run the same typed Predict load, interleaved per concurrency in rotating order, so drift in
the machine's load hits all alike."""

from __future__ import annotations

import asyncio
import contextlib
import timeit
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from _load import (
    CONCURRENCY, Cell, closed_loop, console, free_port, python, ratio, spawn, stop, table, verdict, wait_until,
)
from _servers import Mesh
from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.observability.metrics import ServiceMetrics
from services.core.settings import ObservabilitySettings

MODES = {"off": {"MLMESH_METRICS_ENABLED": "0", "MLMESH_TRACING_ENABLED": "0"},
         "metrics": {"MLMESH_METRICS_ENABLED": "1", "MLMESH_TRACING_ENABLED": "0"},
         "on": {"MLMESH_METRICS_ENABLED": "1", "MLMESH_TRACING_ENABLED": "1"}}


async def _healthy(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@contextlib.asynccontextmanager
async def _serving(mesh: Mesh, root: Path, mode: str, model: str):
    """A serving process in `mode` with the MLP deployed as session "mlp"; yields (stub, pid, metrics url)."""
    port, metrics_port = free_port(), free_port()
    env = {**mesh.env, **MODES[mode], "MLMESH_METRICS_PORT": str(metrics_port)}
    log = root / f"serving-{mode}.log"
    process = spawn([python(), "-m", "services.serving", "--port", str(port)], log, env)
    address = f"127.0.0.1:{port}"
    try:
        await wait_until(lambda: _healthy(address), process, log, f"serving ({mode})")
        async with grpc.aio.insecure_channel(address) as channel:
            stub = serving_pb2_grpc.ServingStub(channel)
            await stub.Deploy(serving_pb2.DeployRequest(model=model, session_id="mlp",
                                                        executor=serving_pb2.EXECUTOR_KIND_IN_PROCESS),
                              metadata=mesh.metadata, timeout=120)
            url = f"http://127.0.0.1:{metrics_port}/metrics" if mode != "off" else None
            yield stub, process.pid, url
    finally:
        stop(process)


async def _scraped_every_second(url: str | None, stop_at: asyncio.Event) -> int:
    """Scrapes `url` as a Prometheus would (more often: every second); how many scrapes answered."""
    answered = 0
    while url and not stop_at.is_set():
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        answered += b"mlmesh_rpc_requests_total" in body
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_at.wait(), 1.0)
    return answered


async def _cell(stub, pid: int, url: str | None, request, metadata, concurrency: int, seconds: float) -> Cell:
    done = asyncio.Event()
    scraper = asyncio.ensure_future(_scraped_every_second(url, done))
    try:
        return await closed_loop(lambda i: stub.Predict(request, metadata=metadata), concurrency, seconds,
                                 server_pid=pid)
    finally:
        done.set()
        scrapes = await scraper
        if url:
            assert scrapes >= 1, "the metrics endpoint never answered during the load"


async def observability_cost(mesh: Mesh, root: Path, row: list[float], seconds: float, rounds: int = 3) -> dict:
    request = serving_pb2.PredictRequest(session_id="mlp", rows=[serving_pb2.FeatureRow(values=row)])
    modes = list(MODES)
    async with contextlib.AsyncExitStack() as stack:
        servers = {mode: await stack.enter_async_context(_serving(mesh, root, mode, "bench_mlp@prod"))
                   for mode in modes}
        for stub, _, _ in servers.values():   # warm all (first calls build the per-method caches)
            for _ in range(50):
                await stub.Predict(request, metadata=mesh.metadata)
        cells: dict[tuple[str, int], list[Cell]] = {}
        for index in range(rounds):
            for c in CONCURRENCY:
                shift = (index + c) % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    stub, pid, url = servers[mode]
                    cell = await _cell(stub, pid, url, request, mesh.metadata, c, seconds / rounds)
                    cells.setdefault((mode, c), []).append(cell)
    m = {key: _merge(parts) for key, parts in cells.items()}
    rows = [[str(c), *[v for mode in modes for v in (f"{m[mode, c].rps:,.0f}", f"{m[mode, c].p50_ms:.2f}",
                                                      f"{m[mode, c].cpu_us:,.0f}")],
             *[f"{ratio(m[mode, c].rps, m['off', c].rps):.3f}x / {ratio(m[mode, c].cpu_us, m['off', c].cpu_us):.3f}x"
               for mode in modes[1:]]] for c in CONCURRENCY]
    table(f"6. observability cost: tiny MLP Predict with metrics + tracing off, metrics alone, both on (/metrics "
          f"scraped every second); {rounds} rotating rounds per cell",
          ["concurrency", *[f"{mode} {h}" if h == "req/s" else h for mode in modes for h in ("req/s", "p50", "CPU µs")],
           *[f"{mode} / off: throughput / CPU per request" for mode in modes[1:]]], rows)
    console.print(f"  in isolation (noise-free): the interceptor's metrics cost {_observe_us():.2f} µs per call "
                  f"(one counter increment and one histogram observation)")
    found = {}
    for mode, label in (("metrics", "metrics alone"), ("on", "metrics + tracing")):
        worst = min(ratio(m[mode, c].rps, m["off", c].rps) for c in CONCURRENCY)
        cpu = max(ratio(m[mode, c].cpu_us, m["off", c].cpu_us) for c in CONCURRENCY)
        found[f"{label} < 5% cost"] = verdict(f"{label}: throughput under 5% lower (every concurrency)",
                                              worst >= 0.95, f"lowest {mode}/off {worst:.3f}x; CPU per request "
                                              f"at most {cpu:.3f}x")
    return found


def _observe_us(calls: int = 200_000) -> float:
    """Per-call time of what the interceptor records for a call, in this process."""
    method = ServiceMetrics("bench", ObservabilitySettings()).rpc.for_method("/mlmesh.v1.Serving/Predict")
    seconds = timeit.timeit(lambda: method.observe(grpc.StatusCode.OK, 0.0004), number=calls)
    return seconds / calls * 1e6


def _merge(parts: list[Cell]) -> Cell:
    """Rounds of one cell as one: throughput and CPU averaged, percentiles of the rounds averaged."""
    n = len(parts)
    return Cell(sum(p.rps for p in parts) / n, sum(p.p50_ms for p in parts) / n, sum(p.p99_ms for p in parts) / n,
                sum(p.done for p in parts), sum(p.errors for p in parts), next((p.first_error for p in parts
                                                                                 if p.first_error), ""),
                sum(p.cpu_us for p in parts) / n)
