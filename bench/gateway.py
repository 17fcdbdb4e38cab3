"""Latency of data.ml.predict through the MCP gateway against the same Predict made directly over gRPC.

Real processes, as `mlmesh up` runs them, on free loopback ports of a temporary MLMESH_HOME: the registry,
serving (in-process executor) and the gateway (`python -m services.mcp_gateway`). A demo predictor is
trained briefly, saved signed, registered and deployed; then one closed-loop caller at a time sends the
same rows four ways, interleaved in rounds so drift hits all alike:
  grpc      Serving.Predict on a grpc.aio channel (the baseline);
  relay     the floor: bench/_relay.py, uvicorn relaying the same JSON-RPC POST to the same Predict with
            nothing else (no token check, no MCP SDK, no validation): one HTTP hop plus one gRPC hop;
  mcp-http  the gateway, one JSON-RPC tools/call POST per call (what the gateway itself adds);
  mcp-sdk   the gateway through the official `mcp` client (what an agent sees, the client's own work included).
Prints p50 / p99 / mean per cell, each column's ratio to grpc (goal: p50 <= 1.3x) and the gateway's own cost
above the relay floor.

    .venv/bin/python bench/gateway.py [--calls 400] [--rows 1 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx2
import torch
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console
from rich.table import Table

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.settings import AuthSettings, MeshSettings
from services.mesh.demo import data, models as demo
from services.mesh.demo.seed import save
from services.mesh.health import SERVING, check_health
from services.core.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
SESSION = "bench-alpha"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(topology_file: Path, name: str, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    endpoint = load_topology(topology_file).get(name)
    deadline = time.monotonic() + timeout_s
    while check_health(endpoint, timeout_s=1.0) != SERVING:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not become healthy:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


async def wait_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    """Until `url` answers a request at all (any status)."""
    deadline = time.monotonic() + timeout_s
    async with httpx2.AsyncClient() as client:
        while True:
            try:
                await client.get(url, timeout=1.0)
                return
            except httpx2.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{url} did not come up:\n{log.read_text()[-3000:]}") from None
                await asyncio.sleep(0.1)


async def publish_and_deploy(mesh: MeshSettings, registry: str, serving: str) -> str:
    """Train the demo alpha predictor briefly, save it signed, register it, deploy it; the serving token."""
    issuer = TokenIssuer.from_settings(mesh, AuthSettings())
    trained = demo.alpha_model("bull", torch.Generator().manual_seed(1), 40, lambda n: None)
    client = RegistryClient.connect(registry, issuer, subject="bench", scopes=ALL_SCOPES)
    token = set_principal(Principal("bench", frozenset(ALL_SCOPES), "registry", "b", time.time() + 600))
    try:
        kit = build_artifact_toolkit(mesh, LineageBus(), service="bench", write_scope=REGISTRY_WRITE,
                                     read_scope=REGISTRY_WRITE)
        saved = await save(trained, kit)
        await client.register_artifact(saved.manifest, name="alpha_bull", aliases=("prod",),
                                       signature=signature_message(kit.signer, saved.signature))
    finally:
        reset_principal(token)
        await client.close()
    serving_token = issuer.mint("bench", "serving", ALL_SCOPES)
    async with grpc.aio.insecure_channel(serving) as channel:
        await serving_pb2_grpc.ServingStub(channel).Deploy(
            serving_pb2.DeployRequest(model="alpha_bull@prod", session_id=SESSION),
            metadata=(("authorization", f"Bearer {serving_token}"),))
    return serving_token


def tools_call(rows: list[list[float]], call_id: int) -> dict:
    return {"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "data.ml.predict", "arguments": {"session_id": SESSION, "rows": rows},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}


async def measure(serving: str, serving_token: str, url: str, relay_url: str, mcp_token: str,
                  rows: list[list[float]], calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"grpc": [], "relay": [], "mcp-http": [], "mcp-sdk": []}
    request = serving_pb2.PredictRequest(session_id=SESSION, rows=[serving_pb2.FeatureRow(values=r) for r in rows])
    metadata = (("authorization", f"Bearer {serving_token}"),)
    headers = {"authorization": f"Bearer {mcp_token}", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "data.ml.predict"}
    async with grpc.aio.insecure_channel(serving) as channel, httpx2.AsyncClient(headers=headers) as http, \
            httpx2.AsyncClient(headers={"authorization": f"Bearer {mcp_token}"}) as sdk_http, \
            Client(streamable_http_client(url, http_client=sdk_http)) as client:
        stub = serving_pb2_grpc.ServingStub(channel)
        expected = [list(p.values) for p in (await stub.Predict(request, metadata=metadata)).predictions]

        async def direct() -> None:
            await stub.Predict(request, metadata=metadata)

        async def raw(call_id: int = 0, target: str = url) -> None:
            reply = await http.post(target, json=tools_call(rows, call_id))
            result = reply.json()["result"]
            assert not result.get("isError") and result["structuredContent"]["predictions"] == expected, result

        async def relay() -> None:
            await raw(target=relay_url)

        async def sdk() -> None:
            result = await client.call_tool("data.ml.predict", {"session_id": SESSION, "rows": rows})
            assert not result.is_error and result.structured_content["predictions"] == expected, result.content

        for _ in range(30):   # warm every path: connections, token caches, JIT-free but cache-warm
            await direct(), await relay(), await raw(), await sdk()
        for _ in range(calls):
            for name, fn in (("grpc", direct), ("relay", relay), ("mcp-http", raw), ("mcp-sdk", sdk)):
                began = time.perf_counter()
                await fn()
                times[name].append((time.perf_counter() - began) * 1000.0)
    return times


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


async def main_async(args: argparse.Namespace) -> None:
    console = Console()
    home = Path(tempfile.mkdtemp(prefix="mlmesh-bench-gw-"))
    ports = {"registry": free_port(), "serving": free_port(), "mlmesh-ml-mcp": free_port(), "relay": free_port()}
    topology = home / "topology.yaml"
    topology.write_text(yaml.safe_dump({"services": {
        "registry": {"module": "services.registry", "port": ports["registry"]},
        "serving": {"module": "services.serving", "port": ports["serving"]},
        "mlmesh-ml-mcp": {"module": "services.mcp_gateway", "port": ports["mlmesh-ml-mcp"], "protocol": "http",
                          "health": "/healthz"}}}))
    url = f"http://127.0.0.1:{ports['mlmesh-ml-mcp']}/mcp/ml"
    env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology), "MLMESH_LOG_LEVEL": "WARNING",
           "MLMESH_SERVING_EXECUTOR": "in_process", "MLMESH_SERVING_START_TRITON": "false",
           "MLMESH_MCP_ML_CANONICAL_URI": url, "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("MLMESH_HOME", "MLMESH_TOPOLOGY_FILE")})
    mesh = MeshSettings()
    processes = []
    try:
        for name, module in (("registry", "services.registry"), ("serving", "services.serving"),
                             ("mlmesh-ml-mcp", "services.mcp_gateway")):
            log = home / f"{name}.log"
            processes.append(start(module, env, log))
            wait_healthy(topology, name, processes[-1], log)
            if name == "serving":
                serving_token = await publish_and_deploy(mesh, f"127.0.0.1:{ports['registry']}",
                                                         f"127.0.0.1:{ports['serving']}")
        log = home / "relay.log"
        with log.open("wb") as out:
            processes.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "_relay.py"), str(ports["relay"]),
                 f"127.0.0.1:{ports['serving']}", serving_token], env=env, cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT))
        relay_url = f"http://127.0.0.1:{ports['relay']}/mcp/ml"
        await wait_http(relay_url, processes[-1], log)
        mcp_token = TokenIssuer.from_settings(mesh, AuthSettings()).mint("bench-agent", url, ["serving.infer"])
        table = Table(title=f"data.ml.predict: gateway vs direct gRPC ({args.calls} sequential calls per cell)")
        for column in ("rows", "path", "p50 ms", "p99 ms", "mean ms", "p50 ratio", "mean ratio"):
            table.add_column(column, justify="right")
        above: dict[int, tuple[float, float]] = {}
        for n in args.rows:
            rows = data.market(n, torch.Generator().manual_seed(n), regime=0)[0].tolist()
            times = await measure(f"127.0.0.1:{ports['serving']}", serving_token, url, relay_url, mcp_token, rows,
                                  args.calls)
            base_p50, base_mean = statistics.median(times["grpc"]), statistics.fmean(times["grpc"])
            for name, values in times.items():
                p50, mean = statistics.median(values), statistics.fmean(values)
                table.add_row(str(n), name, f"{p50:.3f}", f"{pct(values, 99):.3f}", f"{mean:.3f}",
                              f"{p50 / base_p50:.2f}x", f"{mean / base_mean:.2f}x")
            floor = statistics.median(times["relay"])
            above[n] = statistics.median(times["mcp-http"]) - floor, floor / base_p50
        console.print(table)
        for n, (extra_ms, floor_ratio) in above.items():
            console.print(f"{n} row(s): the relay floor is {floor_ratio:.2f}x direct gRPC (no Python HTTP gateway "
                          f"does better here); the gateway adds {extra_ms:.3f} ms above it (token, MCP, audit)")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per path and row count")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 32], help="rows per Predict")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
