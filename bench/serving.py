"""Serving throughput and latency, side by side in one run, with one closed-loop load client (this process)
at concurrency 1, 8 and 64 against servers in their own processes. Five sections, each a table with its
ratios and a line per target:

  1 overhead-bound   a tiny MLP: mlmesh's typed Predict vs a bare grpc.aio echo server, same payload
  2 compute-bound    an LSTM (ms per call): continuous batching vs the same server unbatched (max_batch_size 1),
                     and vs the raw model in this process at the batch sizes the server formed
  3 tensor protocol  the same tritonclient load against mlmesh's KServe v2 endpoint, MLServer (adaptive
                     batching, .bench-venvs/mlserver) and Triton (python backend, .triton-venv)
  4 forecasting      iteration-level vs request-level batching on mixed horizons: throughput at equal p50,
                     from each mode's latency-throughput curve (a concurrency sweep)
  5 kill switch      time from HaltAll to the last answer, against one batch time: a Predict session with
                     millisecond batches drained (the default) and with cancel_running, and the LSTM forecaster
  6 observability    the same typed Predict load against serving with metrics + tracing off and on

    .venv/bin/python bench/serving.py [--seconds 4] [--log-level INFO] [--only observability|forecasting|kill-switch]

MLServer's environment is built by bench/setup_mlserver.sh on first use (~35 s once); Triton's by
`make triton`. A server that cannot run here gets a "not measured: <reason>" row. Each cell also reports the
server's CPU time per answered request (its whole process tree, from /proc): a figure the machine's other load
moves far less than throughput, since other sessions share these 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import torch

from _load import CONCURRENCY, closed_loop, console, machine_load, ratio, summary, table, verdict
from _observability import observability_cost
from _sections import forecasting, kill_switch, tensor_protocol
from _servers import EchoServer, Mesh
from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.models.architectures import build_module

MLP = {"type": "mlp", "layers": [8, 32, 16, 4]}
LSTM = {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 256, "num_layers": 1, "window": 64}
# Forecasting: the demo's price forecaster size. Its step grows little with the batch (~0.25 ms at 1, ~0.55 ms
# at 32 here), which is where iteration-level batching pays: a bigger CPU LSTM costs per row, not per step.
# The kill switch: a Predict model whose batch of 32 takes milliseconds, so a drained batch is visible.
WIDE_MLP = {"type": "mlp", "layers": [64, 4096, 4096, 8]}
WIDE_ROW = [float(np.cos(i)) for i in range(64)]
FORECAST_LSTM = {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 24, "num_layers": 1, "window": 32}
ROW = [0.3, -0.5, 1.1, 0.0, -1.2, 0.7, 0.25, -0.9]
HISTORY = [float(np.sin(i / 5.0)) for i in range(64)]


async def overhead(mesh: Mesh, root: Path, mlp: torch.nn.Module, seconds: float) -> dict:
    request = serving_pb2.PredictRequest(session_id="mlp", rows=[serving_pb2.FeatureRow(values=ROW)])
    answer = await mesh.stub.Predict(request, metadata=mesh.metadata)
    with torch.inference_mode():
        want = mlp(torch.tensor([ROW])).tolist()[0]
    assert np.allclose(answer.predictions[0].values, want, atol=1e-5), "mlmesh answered something else"
    cells, serving_pid = {}, mesh.processes["serving"].pid
    async with EchoServer(root, rows=1, outputs=4) as echo, grpc.aio.insecure_channel(echo.address) as channel:
        echo_stub = serving_pb2_grpc.ServingStub(channel)
        for c in CONCURRENCY:  # interleaved, so drift in the machine's load hits both alike
            cells["echo", c] = await closed_loop(lambda i: echo_stub.Predict(request, metadata=mesh.metadata), c,
                                                 seconds, server_pid=echo.process.pid)
            cells["mlmesh", c] = await closed_loop(lambda i: mesh.stub.Predict(request, metadata=mesh.metadata), c,
                                                   seconds, server_pid=serving_pid)
    rows = [[str(c), *cells["echo", c].row(cpu=True), *cells["mlmesh", c].row(cpu=True),
             f"{ratio(cells['mlmesh', c].rps, cells['echo', c].rps):.2f}x",
             f"{ratio(cells['echo', c].cpu_us, cells['mlmesh', c].cpu_us):.2f}x"] for c in CONCURRENCY]
    table("1. overhead-bound: tiny MLP [8,32,16,4], one row per call (req/s, ms, server CPU µs per request)",
          ["concurrency", "echo req/s", "p50", "p99", "CPU µs", "mlmesh Predict req/s", "p50", "p99", "CPU µs",
           "mlmesh / echo", "echo CPU / mlmesh CPU"], rows)
    worst = min(ratio(cells["mlmesh", c].rps, cells["echo", c].rps) for c in CONCURRENCY)
    return {"overhead >= 0.8x echo": verdict(">= 0.8x echo throughput (every concurrency)", worst >= 0.8,
                                             f"lowest ratio {worst:.2f}x")}


def raw_rows_per_s(model: torch.nn.Module, histogram: dict[int, int], window: int, cache: dict[int, float]) -> float:
    """Rows per second of the raw model run back to back at the batch sizes the server formed (weighted)."""
    rows = seconds = 0.0
    for size, count in histogram.items():
        if size not in cache:
            x = torch.randn(size, window)
            runs: list[float] = []
            with torch.inference_mode():
                model(x)
                while len(runs) < 3 or (sum(runs) < 0.15 and len(runs) < 30):  # a median, against the noise
                    start = time.perf_counter()
                    model(x)
                    runs.append(time.perf_counter() - start)
            cache[size] = float(np.median(runs))
        rows += size * count
        seconds += cache[size] * count
    return rows / seconds if seconds else float("nan")


def cpu_ceiling(cell, raw_rows_per_s: float) -> float:
    """The most the server could reach at its measured CPU cost, as a fraction of the raw model, if no core
    ever waited: cores / (server + client CPU per one-row request), capped by the raw model itself (one
    thread in the server as in the raw measurement). Below it: waiting; above it: impossible here."""
    per_request_s = (cell.cpu_us + cell.client_cpu_us) * 1e-6
    if not per_request_s > 0 or not raw_rows_per_s > 0:
        return float("nan")
    return min(1.0, (os.cpu_count() or 1) / per_request_s / raw_rows_per_s)


async def compute(mesh: Mesh, lstm: torch.nn.Module, seconds: float) -> dict:
    def call(session: str):
        request = serving_pb2.ForecastRequest(session_id=session, history=HISTORY, horizon=1)
        return lambda i: mesh.stub.Forecast(request, metadata=mesh.metadata)

    cells, formed, pid = {}, {}, mesh.processes["serving"].pid
    for c in CONCURRENCY:
        before = dict((await mesh.session("lstm-batched")).stats.batch_size_counts)
        cells["batched", c] = await closed_loop(call("lstm-batched"), c, seconds, server_pid=pid)
        after = dict((await mesh.session("lstm-batched")).stats.batch_size_counts)
        formed[c] = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
        cells["unbatched", c] = await closed_loop(call("lstm-unbatched"), c, seconds, server_pid=pid)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the server's executor uses on this machine (cores - 1, at least 1)
    cache: dict[int, float] = {}
    try:
        raw = {c: raw_rows_per_s(lstm, formed[c], LSTM["window"], cache) for c in CONCURRENCY}
    finally:
        torch.set_num_threads(threads)
    mean = {c: sum(k * v for k, v in formed[c].items()) / max(1, sum(formed[c].values())) for c in CONCURRENCY}
    ceiling = {c: cpu_ceiling(cells["batched", c], raw[c]) for c in CONCURRENCY}
    rows = [[str(c), *cells["unbatched", c].row(cpu=True), *cells["batched", c].row(cpu=True), f"{mean[c]:.1f}",
             f"{raw[c]:,.0f}", f"{ratio(cells['batched', c].rps, cells['unbatched', c].rps):.2f}x",
             f"{ratio(cells['batched', c].rps, raw[c]):.2f}x", f"{ceiling[c]:.2f}x"] for c in CONCURRENCY]
    table(f"2. compute-bound: LSTM hidden {LSTM['hidden_size']}, window {LSTM['window']} "
          f"({cache.get(1, float('nan')) * 1e3:.2f} ms per call at batch 1), Forecast horizon 1",
          ["concurrency", "unbatched req/s", "p50", "p99", "CPU µs", "batched req/s", "p50", "p99", "CPU µs",
           "batch mean", "raw model rows/s", "batched / unbatched", "batched / raw", "CPU ceiling / raw"], rows)
    at64 = cells["batched", 64]
    console.print(f"  CPU ceiling: {os.cpu_count()} cores / (server + load client CPU per request) as a fraction of the "
                  f"raw model: the most this server's CPU cost allows here with nothing ever waiting (the client "
                  f"shares the cores). At 64: server {at64.cpu_us:,.0f} µs per request, of which the model "
                  f"~{1e6 / raw[64]:,.0f} µs (raw, per row), client {at64.client_cpu_us:,.0f} µs")
    vs_unbatched = ratio(cells["batched", 64].rps, cells["unbatched", 64].rps)
    vs_raw = ratio(cells["batched", 64].rps, raw[64])
    return {
        "compute >= 3x unbatched": verdict(">= 3x unbatched at concurrency 64", vs_unbatched >= 3,
                                           f"{vs_unbatched:.2f}x"),
        "compute >= 0.7x raw": verdict(">= 0.7x the raw model at the batch sizes formed (concurrency 64)",
                                       vs_raw >= 0.7, f"{vs_raw:.2f}x (CPU ceiling here {ceiling[64]:.2f}x)"),
    }


def kill_switch_cases(mesh: Mesh) -> list:
    predict = serving_pb2.PredictRequest(session_id="mlp-wide", rows=[serving_pb2.FeatureRow(values=WIDE_ROW)])
    forecast = serving_pb2.ForecastRequest(session_id="lstm-batched", history=HISTORY, horizon=1)
    wide = lambda: mesh.stub.Predict(predict, metadata=mesh.metadata)  # noqa: E731
    return [("Predict, MLP [64,4096,4096,8], running batch drained (default)", "mlp-wide", wide, False),
            ("Predict, MLP [64,4096,4096,8], cancel_running", "mlp-wide", wide, True),
            ("Forecast, LSTM hidden 256, horizon 1 (running sequences fail at once)", "lstm-batched",
             lambda: mesh.stub.Forecast(forecast, metadata=mesh.metadata), False)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell (plus 0.5 s warm-up)")
    parser.add_argument("--log-level", default="INFO", help="the mlmesh services' MLMESH_LOG_LEVEL (INFO: shipped)")
    parser.add_argument("--mlserver-batch-time", type=float, default=0.0005,
                        help="MLServer adaptive batching: max_batch_time in seconds")
    parser.add_argument("--only", choices=("all", "observability", "forecasting", "kill-switch"), default="all",
                        help="one section alone: 6 (metrics + tracing off vs on), 4 (iteration-level batching) "
                        "or 5 (the kill switch)")
    args = parser.parse_args()
    began = time.monotonic()
    console.print(f"[bold]mlmesh serving bench[/] - {machine_load()} at start")
    torch.manual_seed(0)
    mlp, lstm, small, wide = (build_module(a).eval() for a in (MLP, LSTM, FORECAST_LSTM, WIDE_MLP))
    stats = {"training_stats": {"mean": [0.0], "std": [1.0]}, "metadata": {"interface": "forecaster"}}
    targets: dict = {}
    with tempfile.TemporaryDirectory(prefix="mlmesh-bench-serving-") as tmp:
        root = Path(tmp)
        async with Mesh(root, args.log_level) as mesh:
            await mesh.publish("bench_mlp", mlp, MLP, feature_names=[f"f{i}" for i in range(8)],
                               training_stats={"mean": [0.0] * 8, "std": [1.0] * 8},
                               metadata={"interface": "predictor"})
            if args.only == "observability":
                targets.update(await observability_cost(mesh, root, ROW, args.seconds))
                return summary(targets, began)
            await mesh.publish("bench_fc_lstm", small, FORECAST_LSTM, **stats)
            await mesh.deploy("fc-iteration", "bench_fc_lstm@prod", max_batch_size=32, iteration_level=True)
            await mesh.deploy("fc-request", "bench_fc_lstm@prod", max_batch_size=32, iteration_level=False)
            if args.only == "forecasting":
                targets.update(await forecasting(mesh, args.seconds, HISTORY, FORECAST_LSTM))
                return summary(targets, began)
            await mesh.publish("bench_lstm", lstm, LSTM, **stats)
            await mesh.publish("bench_mlp_wide", wide, WIDE_MLP, feature_names=[f"f{i}" for i in range(64)],
                               training_stats={"mean": [0.0] * 64, "std": [1.0] * 64},
                               metadata={"interface": "predictor"})
            await mesh.deploy("mlp-wide", "bench_mlp_wide@prod", max_batch_size=32)
            await mesh.deploy("mlp", "bench_mlp@prod")
            await mesh.deploy("lstm-batched", "bench_lstm@prod", max_batch_size=32)
            await mesh.deploy("lstm-unbatched", "bench_lstm@prod", max_batch_size=1)
            if args.only == "kill-switch":
                targets.update(await kill_switch(mesh, kill_switch_cases(mesh)))
                return summary(targets, began)
            console.print(f"mesh up, models registered and deployed in {time.monotonic() - began:.0f} s\n")
            targets.update(await overhead(mesh, root, mlp, args.seconds))
            targets.update(await compute(mesh, lstm, args.seconds))
            targets.update(await tensor_protocol(mesh, root, mlp, MLP, ROW, args.seconds, args.mlserver_batch_time))
            targets.update(await forecasting(mesh, args.seconds, HISTORY, FORECAST_LSTM))
            targets.update(await kill_switch(mesh, kill_switch_cases(mesh)))
            targets.update(await observability_cost(mesh, root, ROW, args.seconds))
    summary(targets, began)


if __name__ == "__main__":
    asyncio.run(main())
