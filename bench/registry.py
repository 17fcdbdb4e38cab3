"""Registry throughput: PublishSkill and GetSkill at concurrency 1 and 16, SQLite and PostgreSQL side by side.

Each backend gets its own registry process (as `mlmesh up` runs it) on a free loopback port; one
closed-loop client in this process drives it. Prints ops/s, p50 and p99 per cell, then the ratios.

    .venv/bin/python bench/registry.py [--seconds 3] [--postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from mlmesh.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spec_yaml(index: int) -> str:
    # Each publish is new content, so every call really writes a version; 16 skills share the load.
    return f"""
name: bench_skill_{index % 16}
description: benchmark skill revision {index}
inputs:
  features: {{type: features}}
steps:
  - id: predict
    interface: predictor
    model: bench_model@prod
    inputs: {{features: $inputs.features}}
outputs:
  value: $steps.predict.value
"""


class RegistryProcess:
    def __init__(self, home: Path, database_url: str) -> None:
        self.home, self.database_url, self.port = home, database_url, free_port()
        self.proc: subprocess.Popen | None = None

    async def __aenter__(self) -> "RegistryProcess":
        env = {**os.environ, "MLMESH_HOME": str(self.home), "MLMESH_DATABASE_URL": self.database_url,
               "MLMESH_LOG_LEVEL": "WARNING"}
        log = open(self.home / "registry.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.registry", "--port", str(self.port)], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(300):
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.aio.AioRpcError:
                    pass
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        raise SystemExit(f"registry did not start; see {self.home / 'registry.log'}")

    async def __aexit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


async def closed_loop(call, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """Each worker calls back to back for `seconds`; returns (ops/s, p50 ms, p99 ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call(next(counter))
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000


async def measure(backend: str, database_url: str, home: Path, seconds: float) -> dict[tuple[str, int], tuple]:
    home.mkdir(parents=True)
    token = TokenIssuer.from_settings(MeshSettings(home=home), AuthSettings()).mint("bench", "registry", ALL_SCOPES)
    metadata = (("authorization", f"Bearer {token}"),)
    results = {}
    async with RegistryProcess(home, database_url) as registry:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{registry.port}") as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            data = b"bench-weights"
            manifest = common_pb2.Manifest(
                files=[common_pb2.ArtifactFile(path="w.safetensors", sha256=hashlib.sha256(data).hexdigest(), size=len(data))]
            )
            await stub.RegisterArtifact(
                registry_pb2.RegisterArtifactRequest(manifest=manifest, name="bench_model", aliases=["prod"]),
                metadata=metadata,
            )
            offset = iter(range(0, 10**9, 10**6))
            for concurrency in CONCURRENCY:
                base = next(offset)

                async def publish(i: int) -> None:
                    request = registry_pb2.PublishSkillRequest(spec_yaml=spec_yaml(base + i))
                    await stub.PublishSkill(request, metadata=metadata)

                async def get(_: int) -> None:
                    await stub.GetSkill(registry_pb2.GetSkillRequest(ref="bench_skill_0@latest"), metadata=metadata)

                results[("publish", concurrency)] = await closed_loop(publish, concurrency, seconds)
                results[("get", concurrency)] = await closed_loop(get, concurrency, seconds)
    return results


async def postgres_database(admin_url: str) -> tuple[str, str]:
    name = f"mlmesh_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, f"{admin_url}/{name}"


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    console = Console(width=130)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        sqlite_home = Path(tmp) / "sqlite"
        results["sqlite"] = await measure(
            "sqlite", f"sqlite+aiosqlite:///{sqlite_home / 'mlmesh.db'}", sqlite_home, args.seconds
        )
        name, url = await postgres_database(args.postgres_url)
        try:
            results["postgres"] = await measure("postgres", url, Path(tmp) / "postgres", args.seconds)
        finally:
            await drop_database(args.postgres_url, name)

    table = Table(title=f"registry throughput ({args.seconds:g} s per cell, closed loop)")
    for column in ("operation", "concurrency", "SQLite ops/s", "p50 / p99 ms", "PostgreSQL ops/s", "p50 / p99 ms", "PG / SQLite"):
        table.add_column(column, justify="right")
    for op in ("publish", "get"):
        for concurrency in CONCURRENCY:
            s, p = results["sqlite"][(op, concurrency)], results["postgres"][(op, concurrency)]
            table.add_row(
                op, str(concurrency), f"{s[0]:.0f}", f"{s[1]:.2f} / {s[2]:.2f}", f"{p[0]:.0f}",
                f"{p[1]:.2f} / {p[2]:.2f}", f"{p[0] / s[0]:.2f}x",
            )
    console.print(table)
    for backend in ("sqlite", "postgres"):
        for op in ("publish", "get"):
            ratio = results[backend][(op, 16)][0] / results[backend][(op, 1)][0]
            console.print(f"{backend:8s} {op:7s} concurrency 16 vs 1: {ratio:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
