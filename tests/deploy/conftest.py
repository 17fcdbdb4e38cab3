"""Real Envoy processes in front of real services on free loopback ports, each under a temporary MLMESH_HOME."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.mesh.envoy.process import envoy_binary
from services.registry.server import RegistryApp, build_registry

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        if result := predicate():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


class ThreadedRegistry:
    """The real registry (build_registry) on its own event loop in a thread, so sync tests and
    module-scoped fixtures can share it while Envoy talks to it over the network."""

    def __init__(self, mesh: MeshSettings) -> None:
        self.mesh = mesh
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="registry-loop", daemon=True)
        self.app: RegistryApp | None = None
        self.port = 0

    def run(self, coro, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def start(self) -> "ThreadedRegistry":
        self.thread.start()
        self.app = self.run(build_registry(self.mesh, ServerSettings(), AuthSettings()))
        self.port = self.run(self.app.start("127.0.0.1", 0))
        return self

    def stop(self) -> None:
        if self.app is not None:
            self.run(self.app.stop(0))
            self.app = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def token(self, audience: str = "registry") -> str:
        return TokenIssuer.from_settings(self.mesh, AuthSettings()).mint("deploy-test", audience, ALL_SCOPES)


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    try:
        return envoy_binary()
    except FileNotFoundError as exc:   # fail, never skip: the front door must be tested
        pytest.fail(f"{exc}", pytrace=False)


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory) -> ThreadedRegistry:
    root = tmp_path_factory.mktemp("registry")
    mesh = MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mlmesh.db'}")
    server = ThreadedRegistry(mesh).start()
    yield server
    server.stop()
