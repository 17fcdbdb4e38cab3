"""The front door on a Triton-backed mesh, side by side in one run: the same tritonclient load client (KServe v2
ModelInfer, a tiny MLP, one row, closed loop at each concurrency) against

  Triton direct          the Triton the mesh uses (the baseline)
  Envoy kserve_direct    the mesh's Envoy with the topology's `kserve_direct`: KServe v2 tensor calls go straight to
                         Triton (no mesh token check, and serving's refusal after a halt is bypassed: only the
                         halt's unload from Triton stops it; model control stays on serving)
  Envoy -> serving       a second Envoy from the same topology without kserve_direct: serving's KServe v2
                         (tokens, rules, continuous batching) in front of its Triton executor
  serving direct         serving's KServe v2 without Envoy (what Envoy adds vs what serving adds)

Target: >= 0.9x Triton direct. Routes are measured in interleaved rounds (each round runs every route at each
concurrency back to back, in alternating order), so a route's ratio in a round compares two runs seconds apart;
the table gives the median of those per-round ratios and their spread, plus each Envoy's own CPU per request
(what the front door costs, read from /proc) and the machine's load average (the load client, Triton and Envoy
share its cores with whatever else runs there). Also times `mlmesh up` (registry, puller, compiler, serving,
gateway, Envoy) from start to all-healthy, per service. Needs .triton-venv (make triton). About 3 minutes:

    .venv/bin/python bench/mesh.py [--seconds 2] [--rounds 7] [--concurrency 1 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.models.architectures import build_module
from services.core.settings import AuthSettings, MeshSettings
from services.core.topology import load_topology
from services.mesh.envoy.config import EnvoyOptions
from services.mesh.envoy.process import EnvoyProcess, start_envoy
from services.serving.triton.launcher import TritonServer, TritonSettings, available

ROOT = Path(__file__).resolve().parents[1]
MLP = {"type": "mlp", "layers": [8, 32, 16, 4]}
ROW = [0.3, -0.5, 1.1, 0.0, -1.2, 0.7, 0.25, -0.9]
SESSION = "bench-mlp"          # the session id is also its model name on Triton: one name for every route
console = Console(width=160)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float | None = None   # CPU time of the route's proxy (Envoy) per answered request


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def envoy_pid(config: Path) -> int | None:
    """The pid of the Envoy started with `-c config` (the mesh's own, started by `mlmesh up`)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"envoy") and str(config).encode() in argv:
            return int(proc.name)
    return None


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


async def closed_loop(call, concurrency: int, seconds: float, pid: int | None = None) -> Cell:
    """`concurrency` callers, each sending its next request when the last one is answered; `pid`: a process
    whose CPU time per request is measured over the run."""
    latencies: list[float] = []
    errors = 0
    cpu_before = cpu_seconds(pid) if pid else 0.0
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal errors
        while (sent := time.perf_counter()) < stop_at:
            try:
                await call()
            except Exception:  # noqa: BLE001 - counted; a route that fails shows it in the table
                errors += 1
                continue
            latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    if not latencies:
        return Cell(0.0, float("nan"), float("nan"), errors)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    cpu_us = (cpu_seconds(pid) - cpu_before) / len(latencies) * 1e6 if pid else None
    return Cell(len(latencies) / elapsed, q[49] * 1e3, q[98] * 1e3, errors, cpu_us)


def write_topology(root: Path, triton_url: str) -> tuple[Path, dict[str, int]]:
    ports = {name: free_port() for name in ("registry", "puller", "compiler", "serving", "mlmesh-ml-mcp",
                                            "envoy", "admin")}
    grpc_services = {"registry": ["mlmesh.v1.Registry"], "puller": ["mlmesh.v1.Puller"],
                     "compiler": ["mlmesh.v1.Compiler"],
                     "serving": ["mlmesh.v1.Serving", "inference.GRPCInferenceService"]}
    services = {name: {"module": f"services.{name}", "host": "127.0.0.1", "port": ports[name],
                       "grpc_services": listed} for name, listed in grpc_services.items()}
    services["mlmesh-ml-mcp"] = {"module": "services.mcp_gateway", "host": "127.0.0.1",
                                 "port": ports["mlmesh-ml-mcp"], "protocol": "http", "health": "/healthz"}
    path = root / "topology.yaml"
    path.write_text(yaml.safe_dump({"services": services, "envoy": {
        "host": "127.0.0.1", "port": ports["envoy"], "admin_port": ports["admin"], "health_interval_s": 1.0,
        "kserve_direct": triton_url}}, sort_keys=False))
    return path, ports


def mlmesh_up(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, float, list[tuple[str, float]]]:
    """Start `mlmesh up`; (process, seconds to "mesh is up", [(service, seconds to its health)])."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=log.open("w"), stdin=subprocess.DEVNULL)
    steps = []
    for line in process.stdout:
        if found := re.search(r"✓ (\S+) healthy", line):
            steps.append((found.group(1), time.perf_counter() - start))
        if "mesh is up" in line:
            # Keep draining stdout in the background so the mesh never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, time.perf_counter() - start, steps
    raise SystemExit(f"mlmesh up exited with {process.wait()}: {log.read_text()[-3000:]}")


async def publish_and_deploy(home: Path, ports: dict[str, int], issuer: TokenIssuer) -> None:
    """The MLP saved signed and registered as the demo seed does, deployed on serving's Triton executor."""
    kit = build_artifact_toolkit(MeshSettings(home=home), LineageBus(), service="bench", write_scope=REGISTRY_WRITE,
                                 read_scope=REGISTRY_WRITE)
    registry = RegistryClient.connect(f"127.0.0.1:{ports['registry']}", issuer, subject="bench", scopes=ALL_SCOPES)
    token = set_principal(Principal("bench", frozenset(ALL_SCOPES), "registry", "b", time.time() + 3600))
    try:
        saved = await kit.saver.save(build_module(MLP).state_dict(), architecture=MLP)
        await registry.register_artifact(saved.manifest, name="mlp", aliases=["prod"],
                                         signature=signature_message(kit.signer, saved.signature))
    finally:
        reset_principal(token)
        await registry.close()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['serving']}") as channel:
        session = await serving_pb2_grpc.ServingStub(channel).Deploy(serving_pb2.DeployRequest(
            model="mlp@prod", session_id=SESSION, executor=serving_pb2.EXECUTOR_KIND_TRITON),
            metadata=(("authorization", f"Bearer {issuer.mint('bench', 'serving', ALL_SCOPES)}"),), timeout=120)
    assert session.executor == serving_pb2.EXECUTOR_KIND_TRITON, session


@dataclass
class Result:
    """One route at one concurrency over the rounds."""

    cell: Cell                 # the median round by throughput (its latencies are shown)
    ratios: list[float]        # per round: this route's req/s / Triton direct's in the same round
    cpu_us: float | None       # median over the rounds of the proxy's CPU per request

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


async def load(routes: dict[str, str], headers: dict[str, str], concurrency: list[int], seconds: float, rounds: int,
               pids: dict[str, int]) -> dict[tuple[str, int], Result]:
    x = np.asarray([ROW], dtype=np.float32)
    tensor = InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    clients = {name: InferenceServerClient(url) for name, url in routes.items()}
    base = next(iter(routes))
    try:
        answers = {name: (await c.infer(SESSION, [tensor], headers=headers)).as_numpy("output")
                   for name, c in clients.items()}
        first = next(iter(answers.values()))
        assert all(np.allclose(a, first, atol=1e-5) for a in answers.values()), answers
        runs: dict[tuple[str, int], list[Cell]] = {}
        # Interleaved rounds: drift in the machine's load hits every route alike; the order flips every round,
        # so no route always runs right after another one (warm caches, a burst left over).
        for round_ in range(rounds):
            order = list(clients.items()) if round_ % 2 == 0 else list(clients.items())[::-1]
            for c in concurrency:
                for name, client in order:
                    runs.setdefault((name, c), []).append(await closed_loop(
                        lambda client=client: client.infer(SESSION, [tensor], headers=headers), c, seconds,
                        pids.get(name)))
    finally:
        for client in clients.values():
            await client.close()
    results = {}
    for (name, c), cells in runs.items():
        baseline = runs[base, c]
        cpu = [cell.cpu_us for cell in cells if cell.cpu_us is not None]
        results[name, c] = Result(
            cell=sorted(cells, key=lambda cell: cell.rps)[len(cells) // 2],
            ratios=[cell.rps / b.rps if b.rps else 0.0 for cell, b in zip(cells, baseline)],
            cpu_us=statistics.median(cpu) if cpu else None)
    return results


def report(results: dict[tuple[str, int], Result], routes: list[str], concurrency: list[int], rounds: int) -> None:
    table = Table(title=f"tritonclient.grpc.aio ModelInfer, tiny MLP, 1 row, {rounds} interleaved rounds: req/s "
                  "(p50 / p99 ms) of the median round; / Triton direct: median of the per-round ratios "
                  "[lowest-highest]")
    table.add_column("concurrency")
    for name in routes:
        table.add_column(name, justify="right")
    for c in concurrency:
        row = [str(c)]
        for name in routes:
            result = results[name, c]
            cell = result.cell
            ratio = (f" {result.ratio:.2f}x [{min(result.ratios):.2f}-{max(result.ratios):.2f}]"
                     if name != routes[0] else "")
            errors = f" ({cell.errors} errors)" if cell.errors else ""
            row.append(f"{cell.rps:,.0f} ({cell.p50_ms:.2f}/{cell.p99_ms:.2f}){ratio}{errors}")
        table.add_row(*row)
    console.print(table)
    for name in routes:
        cpu = [results[name, c].cpu_us for c in concurrency]
        if all(value is not None for value in cpu):
            console.print(f"  {name}: Envoy CPU per request "
                          + ", ".join(f"c={c} {value:.0f} µs" for c, value in zip(concurrency, cpu))
                          + " (median of the rounds)")
    for name in routes[1:]:
        worst = min(results[name, c].ratio for c in concurrency)
        console.print(f"  {name}: lowest median ratio {worst:.2f}x -> target >= 0.9x Triton direct "
                      f"{'MET' if worst >= 0.9 else 'NOT met'}")


async def kill_switch(ports: dict[str, int], issuer: TokenIssuer, kserve_direct: str, headers) -> str:
    """HaltAll, then the kserve_direct route again: serving's refusal is bypassed there, the unload is not."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['envoy']}") as channel:
        await serving_pb2_grpc.ServingStub(channel).HaltAll(serving_pb2.HaltAllRequest(reason="bench"), metadata=(
            ("authorization", f"Bearer {issuer.mint('bench', 'serving', ALL_SCOPES)}"),), timeout=30)
    x = np.asarray([ROW], dtype=np.float32)
    tensor = InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    client = InferenceServerClient(kserve_direct)
    try:
        await client.infer(SESSION, [tensor], headers=headers)
        return "still answered after HaltAll"
    except Exception as exc:  # noqa: BLE001 - the refusal is the expected outcome
        return f"refused after HaltAll: {str(exc).splitlines()[0][:120]}"
    finally:
        await client.close()


async def main(seconds: float, concurrency: list[int], rounds: int) -> None:
    probe = available(TritonSettings())
    if not probe:
        raise SystemExit(f"Triton is not available here ({probe.reason}): run `make triton` first")
    with tempfile.TemporaryDirectory(prefix="mlmesh-bench-mesh-") as tmp:
        root = Path(tmp)
        home, repository = root / "home", root / "triton" / "models"
        triton = TritonServer(TritonSettings(stop_grace_s=2), model_repository=repository,
                              log_file=root / "triton.log")
        await triton.start()
        topology, ports = write_topology(root, triton.url)
        env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology), "COLUMNS": "200",
               "MLMESH_TRITON_URL": triton.url, "MLMESH_TRITON_MODEL_REPOSITORY": str(repository),
               "MLMESH_SERVING_EXECUTOR": "triton"}
        process, up_s, steps = mlmesh_up(env, root / "up.log")
        envoys: list[EnvoyProcess] = []
        try:
            console.print(f"`mlmesh up` to all-healthy (5 services + Envoy): {up_s:.1f} s; per service: "
                          + ", ".join(f"{name} {t:.1f} s" for name, t in steps) + f"; Envoy ready {up_s:.1f} s")
            issuer = TokenIssuer.from_settings(MeshSettings(home=home), AuthSettings())
            await publish_and_deploy(home, ports, issuer)
            envoys.append(start_envoy(root / "envoy-serving", load_topology(topology),
                                      EnvoyOptions(port=free_port(), admin_port=free_port(), health_interval_s=1.0)))
            headers = {"authorization": f"Bearer {issuer.mint('bench', 'serving', ALL_SCOPES)}"}
            routes = {"Triton direct": triton.url, "Envoy kserve_direct": f"127.0.0.1:{ports['envoy']}",
                      "Envoy -> serving": envoys[0].address, "serving direct": f"127.0.0.1:{ports['serving']}"}
            pids = {"Envoy -> serving": envoys[0].pid}
            if mesh_envoy := envoy_pid(home / "envoy" / "envoy.yaml"):
                pids["Envoy kserve_direct"] = mesh_envoy
            console.print(f"  before the load: {load_average()}")
            results = await load(routes, headers, concurrency, seconds, rounds, pids)
            console.print(f"  after the load: {load_average()}")
            report(results, list(routes), concurrency, rounds)
            console.print("  kill switch on the kserve_direct route: "
                          + await kill_switch(ports, issuer, routes["Envoy kserve_direct"], headers))
        finally:
            for envoy in envoys:
                envoy.stop(1.0)
            process.send_signal(signal.SIGINT)
            process.wait(60)
            await triton.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per route, concurrency and round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians over them are reported")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency, args.rounds))
