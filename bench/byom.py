"""Bring your own model: imported models on mlmesh vs the same models on MLServer's own runtimes, side by side
in one run. Two models trained here on synthetic data: an XGBoost classifier and a scikit-learn pipeline.

  A runtimes  in this process, one thread: onnxruntime vs the library's own predict (xgboost inplace_predict,
              scikit-learn predict_proba) per call at batch 1 and 64; mlmesh serves the faster, when the
              conversion is proven (docs/byom.md)
  B servers   the same tritonclient.grpc.aio ModelInfer load (closed loop, one FP32 row per request,
              concurrency 1/8/64) against mlmesh (the models pushed through the public client `mlmesh.Mesh`,
              a session deployed for each, its KServe v2 endpoint) and MLServer 1.7.1's own mlserver-xgboost
              and mlserver-sklearn runtimes (.bench-venvs/mlserver, built by bench/setup_mlserver.sh), as
              shipped and tuned; target: mlmesh >= 1.5x MLServer's throughput at 64 (its better configuration)

    .venv/bin/python bench/byom.py [--seconds 3] [--rounds 3] [--only runtimes|servers] [--quick] [--keep]

A server that cannot run here (MLServer's environment not installable: setup exit 3; the mesh failing to push or
deploy) gets "not measured" rows with the reason, and the rest runs. Every server is stopped at the end; their
logs are in the run's temporary folder (--keep keeps it).

No timed assertion anywhere: the tables print what was measured, and a line per target says whether it was
met. Other sessions share these 2 cores: compare the ratios of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

from rich.markup import escape
from tritonclient.grpc.aio import InferenceServerClient

from _byom_load import MESH, measure, short
from _byom_models import BATCHES, BenchModel, build_models, parity, per_call_us
from _byom_servers import Endpoint, MeshServices, MLServerRuntimes, push_all
from _load import CONCURRENCY, console, machine_load, ratio, summary, table, verdict

GOAL = 1.5            # mlmesh's throughput over MLServer's at concurrency 64
MLSERVER_NOTE = (
    "MLServer defaults: as shipped (parallel_workers 1: inference in a worker process; no adaptive batching; "
    "XGBoost's OpenMP on every core). MLServer tuned: the fastest configuration found here, parallel_workers 0 "
    "(inference in the server process) and OMP_NUM_THREADS=1; its adaptive batching (max 32 / 0.5 ms) measured "
    "slower on these models (about 3x fewer inferences/s at 64), so it is off. mlmesh: in-process executor, the "
    "session's default batching. The goal is judged against the better MLServer.")


def runtimes(models: list[BenchModel], budget_s: float) -> dict[str, str]:
    """Section A; {model: the faster runtime at batch 1 and 64 ("onnxruntime" | "native" | "mixed")}."""
    rows, faster = [], {}
    for model in models:
        winners = set()
        for batch in BATCHES:
            x = model.rows[:batch].copy()
            ort_us = per_call_us(model.onnx, x, budget_s)
            native_us = per_call_us(model.native, x, budget_s)
            winner = "onnxruntime" if ort_us <= native_us else "native"
            winners.add(winner)
            rows.append([model.name, str(batch), f"{ort_us:,.1f}", f"{native_us:,.1f}", model.native_label,
                         f"{ratio(native_us, ort_us):.1f}x", winner])
            for label, fn in model.extra_native.items():
                other_us = per_call_us(fn, x, budget_s)
                rows.append(["", str(batch), "", f"{other_us:,.1f}", label, f"{ratio(other_us, ort_us):.1f}x", ""])
        faster[model.name] = winners.pop() if len(winners) == 1 else "mixed"
    table("A. runtimes in this process, 1 thread: µs per call (P(class) of every row)",
          ["model", "batch", "onnxruntime µs", "native µs", "native call", "native / ORT", "faster"], rows)
    for model in models:
        console.print(f"  {model.name}: {model.title}; ONNX vs native max |diff| {parity(model):.1e} on "
                      f"{len(model.rows)} rows; the faster at batch {'/'.join(map(str, BATCHES))}: "
                      f"[bold]{faster[model.name]}[/] (what mlmesh should serve)")
    return faster


async def servers(models: list[BenchModel], root: Path, seconds: float, rounds: int, log_level: str,
                  faster: dict[str, str]) -> dict:
    """Section B: the same tritonclient load against mlmesh and MLServer (two configurations)."""
    reasons: dict[str, str] = {}
    endpoints: dict[tuple[str, str], Endpoint] = {}
    pids: dict[str, int | None] = {}
    served: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        mesh = None
        try:
            mesh = await stack.enter_async_context(MeshServices(root, log_level))
            pushed = await push_all(mesh, models)
            for model in models:
                session, metadata, took = pushed[model.name]
                endpoints[MESH, model.name] = await mesh.endpoint(session)
                served[model.name] = str((metadata.get("runtime") or {}).get("kind", "?"))
                console.print(f"  mlmesh {model.name}: pushed + deployed in {took:.1f} s as session {session}; "
                              + _serves(metadata))
            pids[MESH] = mesh.serving_pid
            headers = mesh.headers
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported as the rows' reason
            where = mesh.last_error() if mesh else ""
            reasons[MESH] = f"did not run: {type(exc).__name__}: {short(exc)}" + (f" ({where})" if where else "")
            headers = {}
        why = MLServerRuntimes.setup()
        options = [("MLServer defaults", {"workers": 1}),
                   ("MLServer tuned", {"workers": 0, "env": {"OMP_NUM_THREADS": "1"}})]
        for label, kwargs in options:
            if why:
                reasons[label] = why
                continue
            server = MLServerRuntimes(root, models, label, **kwargs)
            try:
                await stack.enter_async_context(server)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported as the rows' reason
                reasons[label] = f"did not start: {short(exc)} (log: {server.log})"
                continue
            pids[label] = server.pid
            for model in models:
                endpoints[label, model.name] = server.endpoint(model)
        names = [MESH, *(label for label, _ in options)]
        console.print(f"  {MLSERVER_NOTE}")
        for name, reason in reasons.items():
            console.print(f"  [yellow]{name} not measured[/]: {escape(reason)}")
        clients = {url: InferenceServerClient(url) for url in {e.url for e in endpoints.values()}}
        stack.push_async_callback(lambda: asyncio.gather(*(c.close() for c in clients.values())))
        targets: dict = {}
        for model in models:
            cells, batches = await measure(model, names, endpoints, clients, pids, headers, seconds, rounds, reasons,
                                           mesh)
            targets.update(_report(model, names, cells, batches, f"{rounds} x {seconds:g} s per cell"))
        if MESH not in reasons and "xgboost" in faster and "xgboost" in served:
            want = "onnxruntime" if faster["xgboost"] == "onnxruntime" else "xgboost"
            targets["mlmesh serves the faster runtime (xgboost)"] = verdict(
                "mlmesh serves the faster runtime of section A (xgboost)", served["xgboost"] == want,
                f"serves {served['xgboost']}; faster in section A: {faster['xgboost']}")
        return targets


def _serves(metadata: dict) -> str:
    """What the pushed artifact's metadata says serving runs (docs/byom.md), and the conversion's parity."""
    runtime, conversion = metadata.get("runtime") or {}, metadata.get("conversion") or {}
    line = f"serves {runtime.get('kind')} ({runtime.get('file')})"
    if conversion:
        line += (f"; conversion: served {conversion.get('served')}, parity max |diff| "
                 f"{float(conversion.get('max_abs_diff', 'nan')):.1e} on {int(float(conversion.get('rows', 0)))} rows"
                 + (f" ({conversion['reason']})" if conversion.get("reason") else ""))
    return line


def _report(model: BenchModel, names: list[str], cells: dict, batches: dict, timing: str) -> dict:
    rows = []
    for c in CONCURRENCY:
        ours = cells.get((MESH, c))
        for name in names:
            cell = cells.get((name, c))
            vs = f"{ratio(ours.rps, cell.rps):.2f}x" if ours and cell and cell.done and name != MESH else ""
            batch = f"{batches[c]:.1f}" if name == MESH and c in batches else ""
            rows.append([str(c) if name == names[0] else "", name,
                         *(cell.row(cpu=True) if cell else ["not measured", "", "", ""]), batch, vs])
    table(f"B. {model.title}: tritonclient.grpc.aio ModelInfer, 1 FP32 row per request, {timing}",
          ["concurrency", "server", "inferences/s", "p50 ms", "p99 ms", "server CPU µs / inference",
           "batch mean", "mlmesh / this"], rows)
    label = f"{model.name}: mlmesh >= {GOAL}x MLServer's throughput at concurrency 64"
    ours = cells.get((MESH, 64))
    theirs = [(name, cells[name, 64]) for name in names[1:] if (name, 64) in cells and cells[name, 64].done]
    if not ours or not theirs:
        missing = ", ".join(n for n in names if (n, 64) not in cells or not cells[n, 64].done)
        return {label: verdict(f">= {GOAL}x MLServer at 64 ({model.name})", None, f"not measured: {missing}")}
    best_name, best = max(theirs, key=lambda item: item[1].rps)
    value = ratio(ours.rps, best.rps)
    detail = (f"{value:.2f}x its best configuration here ({ours.rps:,.0f} vs {best.rps:,.0f} inf/s, {best_name}); "
              + ", ".join(f"{ratio(ours.rps, cell.rps):.2f}x {name}" for name, cell in theirs)
              + (f"; {ours.errors} mlmesh errors: {ours.first_error}" if ours.errors else ""))
    return {label: verdict(f">= {GOAL}x MLServer at 64 ({model.name})", value >= GOAL and not ours.errors, detail)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load cell and round "
                        "(+0.5 s warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell, the servers' order rotating")
    parser.add_argument("--only", choices=("all", "runtimes", "servers"), default="all")
    parser.add_argument("--quick", action="store_true", help="1 s cells and short runtime timings: a smoke run")
    parser.add_argument("--log-level", default="INFO", help="the mlmesh services' MLMESH_LOG_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (models, servers' logs)")
    args = parser.parse_args()
    seconds, rounds = (1.0, 1) if args.quick else (args.seconds, max(1, args.rounds))
    began = time.monotonic()
    console.print(f"[bold]mlmesh bring-your-own-model bench[/] - {machine_load()} at start")
    targets: dict = {}
    root = Path(tempfile.mkdtemp(prefix="mlmesh-bench-byom-"))
    try:
        models = build_models(root / "models")
        console.print(f"models trained and converted in {time.monotonic() - began:.0f} s; logs under {root}\n")
        faster = {}
        if args.only in ("all", "runtimes"):
            faster = runtimes(models, 0.1 if args.quick else 0.6)
        if args.only in ("all", "servers"):
            targets.update(await servers(models, root, seconds, rounds, args.log_level, faster))
    finally:
        if args.keep:
            console.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary(targets, began)


if __name__ == "__main__":
    asyncio.run(main())
