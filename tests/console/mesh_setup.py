"""What the browser tests need in the mesh before they look at it, done through Envoy like any client: the demo
models and the seed skill, a session deployed on each serving replica, load on one replica, and a batch held
on a model for seconds (the serving replicas are processes here: no gate can hold one, a slow model does)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import torch

from mlmesh.v1 import registry_pb2, serving_pb2, serving_pb2_grpc
from services.core.models.architectures import MLP
from services.mesh.demo import data
from services.mesh.demo.models import Trained
from services.mesh.envoy.config import REPLICA_HEADER
from tests.console.conftest import REPO, ConsoleMesh
from tests.e2e.front import Front, market_rows, register_demo_models, register_models

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


SLOW_MODEL = "console_slow"
SLOW_LAYERS = [len(data.FEATURES), *[1024] * 8, 1]
HELD_S = 4.0             # how long a held batch runs on the model: time to press the kill switch meanwhile
MAX_ROWS = 1 << 16


def _slow_model() -> Trained:
    """A predictor far wider than it needs to be (random weights): thousands of rows keep it busy for seconds.
    Inputs are standardised against mean 0 / std 1, so all-zero rows pass the OOD rule."""
    torch.manual_seed(0)
    stats = {"mean": [0.0] * len(data.FEATURES), "std": [1.0] * len(data.FEATURES)}
    return Trained(SLOW_MODEL, MLP(SLOW_LAYERS), {
        "interface": "predictor", "task": "regression",
        "architecture": {"type": "mlp", "layers": SLOW_LAYERS, "activation": "relu", "output": "value",
                         "input_standardized": True},
        "feature_names": data.FEATURES, "training_stats": stats})


def register_slow_model(mesh: ConsoleMesh) -> None:
    """Registered @prod through Envoy, as the demo models are."""
    async def run() -> None:
        async with grpc.aio.insecure_channel(mesh.envoy) as channel:
            await register_models(Front(mesh, channel), [_slow_model()])
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


class HeldBatch:
    """The slow model deployed as `session_id` on one replica, and Predict calls sized (measured here, on this
    machine) to keep its executor busy about HELD_S seconds: a batch the model is still running, on demand."""

    def __init__(self, mesh: ConsoleMesh, replica: str, session_id: str) -> None:
        self.session_id = session_id
        self._metadata = pinned(mesh, replica)
        self._channel = grpc.insecure_channel(mesh.envoy)
        self._stub = serving_pb2_grpc.ServingStub(self._channel)
        session = self._stub.Deploy(serving_pb2.DeployRequest(
            model=f"{SLOW_MODEL}@prod", session_id=session_id,
            batching=serving_pb2.BatchingConfig(max_batch_size=MAX_ROWS)), metadata=self._metadata, timeout=120)
        assert session.replica == replica and session.state == serving_pb2.SESSION_STATE_READY, session
        self.rows = self._measure()

    def _request(self, rows: int) -> serving_pb2.PredictRequest:
        zeros = serving_pb2.FeatureRow(values=[0.0] * len(data.FEATURES))
        return serving_pb2.PredictRequest(session_id=self.session_id, rows=[zeros] * rows)

    def _measure(self, rows: int = 2048) -> int:
        for _ in range(2):   # the first call also pays for the model's first run
            started = time.monotonic()
            self._stub.Predict(self._request(rows), metadata=self._metadata, timeout=60)
            took = time.monotonic() - started
        return max(rows, min(MAX_ROWS, int(rows * HELD_S / took)))

    def start(self) -> grpc.Future:
        """A Predict of `self.rows` rows, returned once its batch alone is on the model (the session says one
        running, none queued). A batch whose callers were failed may still be running: it is waited out first."""
        deadline = time.monotonic() + 60
        while self.running():
            assert time.monotonic() < deadline, "the model never finished its last batch"
            time.sleep(0.05)
        call = self._stub.Predict.future(self._request(self.rows), metadata=self._metadata, timeout=120)
        while (stats := self.session().stats).running < 1 or stats.queue_depth:
            assert not call.done() and time.monotonic() < deadline, "the batch never reached the model"
            time.sleep(0.02)
        return call

    def session(self) -> serving_pb2.ServingSession:
        return self._stub.GetSession(serving_pb2.GetSessionRequest(session_id=self.session_id),
                                     metadata=self._metadata, timeout=10)

    def running(self) -> int:
        """Requests in the batch the executor is running now (a failed caller's stay until the model returns)."""
        return self.session().stats.running

    def resume(self) -> None:
        self._stub.ResumeSession(serving_pb2.ResumeSessionRequest(session_id=self.session_id),
                                 metadata=self._metadata, timeout=10)

    def __enter__(self) -> "HeldBatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()
