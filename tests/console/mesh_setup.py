"""What the browser tests need in the mesh before they look at it, done through Envoy like any client: the demo
models and the seed skill, a session deployed on each serving replica, and load on one replica."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from mlmesh.v1 import registry_pb2, serving_pb2, serving_pb2_grpc
from services.mesh.envoy.config import REPLICA_HEADER
from tests.console.conftest import REPO, ConsoleMesh
from tests.e2e.front import Front, market_rows, register_demo_models

SEED_SKILL = "regime_aware_alpha"


def publish_seed_skill(mesh: ConsoleMesh) -> tuple[dict[str, str], str]:
    """The models regime_aware_alpha names (trained briefly, registered @prod) and the skill; (ids, version)."""
    async def run() -> tuple[dict[str, str], str]:
        async with grpc.aio.insecure_channel(mesh.envoy) as channel:
            front = Front(mesh, channel)   # duck-typed: token/metadata/home/envoy are all it reads
            ids = await register_demo_models(front)
            spec = (REPO / "configs" / "skills" / f"{SEED_SKILL}.yaml").read_text()
            published = await front.registry.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=spec),
                                                          metadata=front.md("registry"), timeout=30)
            return ids, published.version.version
    # Playwright's sync API runs an event loop in this thread: the async client gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def pinned(mesh: ConsoleMesh, replica: str) -> tuple[tuple[str, str], ...]:
    return (*mesh.metadata("serving"), (REPLICA_HEADER, replica))


def deploy_on_each_replica(mesh: ConsoleMesh, session_id: str, model: str) -> None:
    with grpc.insecure_channel(mesh.envoy) as channel:
        stub = serving_pb2_grpc.ServingStub(channel)
        for replica in mesh.serving_replicas:
            session = stub.Deploy(serving_pb2.DeployRequest(model=model, session_id=session_id),
                                  metadata=pinned(mesh, replica), timeout=120)
            assert session.replica == replica and session.state == serving_pb2.SESSION_STATE_READY, session


class Load:
    """Predict calls on one replica's session from a few threads, until stopped."""

    def __init__(self, mesh: ConsoleMesh, replica: str, session_id: str, threads: int = 4) -> None:
        self._stop = threading.Event()
        self.answered = 0
        self.refused = 0
        rows = [serving_pb2.FeatureRow(values=r) for r in market_rows(2, seed=9)]
        request = serving_pb2.PredictRequest(session_id=session_id, rows=rows)
        metadata = pinned(mesh, replica)
        self._channel = grpc.insecure_channel(mesh.envoy)
        stub = serving_pb2_grpc.ServingStub(self._channel)

        def work() -> None:
            while not self._stop.is_set():
                try:
                    stub.Predict(request, metadata=metadata, timeout=10)
                    self.answered += 1
                except grpc.RpcError:
                    self.refused += 1
                    time.sleep(0.05)

        self._threads = [threading.Thread(target=work, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        self._channel.close()
