"""Fixtures of the gateway tests: the real registry and puller (and a Serving contract double) on
127.0.0.1:0, the gateway built against them, agent tokens, and MCP client sessions from the SDK over
streamable HTTP (the ASGI app through httpx2.ASGITransport) and over stdio (a spawned gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import httpx2
import pytest
import torch
import uvicorn
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from mlmesh.v1 import common_pb2
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.settings import AuthSettings, MeshSettings, MLSettings, PullerSettings, ServerSettings
from services.mcp_gateway.app import build_gateway
from services.mcp_gateway.http_app import build_http_app
from services.mcp_gateway.settings import GatewaySettings
from services.mesh.demo import models as demo
from services.mesh.demo.seed import save
from services.puller.credentials import CredentialResolver
from services.puller.server import build_puller
from services.registry.server import build_registry
from services.serving.server import ServingSettings, build_serving
from tests.mcp_gateway.serving_double import start_double
from tests.puller.hub import LocalHub

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://127.0.0.1:8765"
CANONICAL = ORIGIN + "/mcp/ml"
AGENT = "agent-7"
ALL_TOOL_SCOPES = ("compiler.compile", "operations.read", "puller.pull", "registry.read", "serving.deploy",
                   "serving.halt", "serving.infer", "serving.read", "skills.run")


class AccessLog(logging.Handler):
    """Every call any mesh service answers writes one `mlmesh.access` line: a backend call counter."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def calls(self, service_prefix: str = "/mlmesh.v1.") -> list[str]:
        return [line for line in self.lines if line.startswith(service_prefix)]


@pytest.fixture
def access_log():
    logger, handler = logging.getLogger("mlmesh.access"), AccessLog()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def mesh_settings(tmp_path) -> MeshSettings:
    return MeshSettings(home=tmp_path / "home", database_url=f"sqlite+aiosqlite:///{tmp_path / 'mesh.db'}")


@pytest.fixture
def issuer(mesh_settings) -> TokenIssuer:
    return TokenIssuer.from_settings(mesh_settings, AuthSettings())


@pytest.fixture
def agent_token(issuer):
    def mint(scopes=ALL_TOOL_SCOPES, *, audience: str = CANONICAL, subject: str = AGENT, **kwargs) -> str:
        return issuer.mint(subject, audience, scopes, **kwargs)

    return mint


@pytest.fixture
async def registry(mesh_settings):
    app = await build_registry(mesh_settings, ServerSettings(), AuthSettings())
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest.fixture
def hub():
    server = LocalHub().start()
    yield server
    server.stop()


@pytest.fixture
async def puller(mesh_settings, registry, hub):
    app = await build_puller(mesh_settings, ServerSettings(), AuthSettings(),
                             puller=PullerSettings(hf_endpoint=hub.url),
                             credentials=CredentialResolver(mesh_settings.home / "credentials", environ={}),
                             registry_address=registry.address, cancel_poll_s=0.05)
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest.fixture
async def serving(mesh_settings):
    host, double, address = await start_double(TokenVerifier.from_settings(mesh_settings, AuthSettings(), "serving"))
    double.address = address
    yield double
    await host.stop(0)


@pytest.fixture
def addresses(registry, puller, serving) -> dict[str, str]:
    return {"registry": registry.address, "puller": puller.address, "serving": serving.address,
            "compiler": "127.0.0.1:9"}   # the compiler is not started here: its calls fail UNAVAILABLE


@pytest.fixture
def make_gateway(mesh_settings, addresses, tmp_path):
    built = []

    def make(canonical: str = CANONICAL, *, backends: dict[str, str] | None = None, **settings):
        settings.setdefault("audit_file", tmp_path / "audit.jsonl")
        gateway = build_gateway(mesh=mesh_settings, ml=MLSettings(mcp_ml_canonical_uri=canonical),
                                settings=GatewaySettings(**settings), addresses={**addresses, **(backends or {})})
        built.append(gateway)
        return gateway

    yield make
    for gateway in built:
        gateway.tools.audit.close()


@pytest.fixture
async def gateway(make_gateway):
    gateway = make_gateway()
    yield gateway
    await gateway.close()


@contextlib.asynccontextmanager
async def running(gateway, **kwargs):
    """The gateway's ASGI app with its lifespan (the SDK's session manager) running in a task of its own:
    anyio scopes must close in the task that opened them, and fixture teardown runs in another."""
    app = build_http_app(gateway, **kwargs)
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with gateway.tools.lowlevel.session_manager.run():
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    await started.wait()
    try:
        yield app
    finally:
        stop.set()
        await task


@pytest.fixture
async def http_app(gateway):
    async with running(gateway) as app:
        yield app


@pytest.fixture
def live_gateway(make_gateway):
    """A real uvicorn server on 127.0.0.1:0 (bound first, so the canonical URI can name the port).
    Needed where streaming matters: httpx2.ASGITransport hands over a response only once it is complete."""

    @contextlib.asynccontextmanager
    async def start(**settings):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        canonical = f"http://127.0.0.1:{port}/mcp/ml"
        gateway = make_gateway(canonical, **settings)
        server = uvicorn.Server(uvicorn.Config(build_http_app(gateway, port=port), lifespan="on",
                                               log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield canonical, gateway
        finally:
            server.should_exit = True
            await task
            await gateway.close()
            sock.close()

    return start


@contextlib.asynccontextmanager
async def mcp_url(url: str, token: str, **kwargs):
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(url, http_client=http), **kwargs) as client:
            yield client


def raw_client(app, **headers) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=ORIGIN, headers=headers)


@contextlib.asynccontextmanager
async def mcp_http(app, token: str | None, *, mode: str = "auto", **headers):
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with raw_client(app, **headers) as http:
        async with Client(streamable_http_client(CANONICAL, http_client=http), mode=mode) as client:
            yield client


@pytest.fixture
def audit_lines(tmp_path):
    def read() -> list[dict]:
        path = tmp_path / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    return read


@pytest.fixture
def publish_demo(mesh_settings, issuer, registry):
    """Train a demo predictor briefly, save it signed (as the demo seed does) and register it as alpha_bull@prod."""

    async def publish() -> common_pb2.Artifact:
        trained = demo.alpha_model("bull", torch.Generator().manual_seed(7), 20, lambda n: None)
        client = RegistryClient.connect(registry.address, issuer, subject="test-operator", scopes=ALL_SCOPES)
        token = set_principal(Principal("test-operator", frozenset(ALL_SCOPES), "registry", "t", time.time() + 600))
        try:
            kit = build_artifact_toolkit(mesh_settings, LineageBus(), service="test", write_scope=REGISTRY_WRITE,
                                         read_scope=REGISTRY_WRITE)
            saved = await save(trained, kit)
            return await client.register_artifact(saved.manifest, name="alpha_bull", aliases=("prod",),
                                                  signature=signature_message(kit.signer, saved.signature))
        finally:
            reset_principal(token)
            await client.close()

    return publish


@pytest.fixture
async def alpha(publish_demo) -> common_pb2.Artifact:
    return await publish_demo()


@pytest.fixture
async def real_serving(mesh_settings, registry):
    app = await build_serving(mesh_settings, ServerSettings(), AuthSettings(),
                              serving=ServingSettings(executor="in_process", start_triton=False),
                              registry_address=registry.address)
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


@pytest.fixture
def stdio_params(mesh_settings, addresses, tmp_path):
    """How to spawn `python -m services.mcp_gateway --stdio` against the same services and key."""
    topology = tmp_path / "topology.yaml"
    services = {name: {"host": address.split(":")[0], "port": int(address.split(":")[1])}
                for name, address in addresses.items()}
    services["mlmesh-ml-mcp"] = {"port": 8765, "protocol": "http", "health": "/healthz"}
    topology.write_text(yaml.safe_dump({"services": services}))

    def params(token: str | None, **env) -> StdioServerParameters:
        variables = {"PATH": os.environ.get("PATH", ""), "MLMESH_HOME": str(mesh_settings.home),
                     "MLMESH_TOPOLOGY_FILE": str(topology), "MLMESH_MCP_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
                     "MLMESH_LOG_LEVEL": "WARNING", **env}
        if token:
            variables["MLMESH_MCP_TOKEN"] = token
        return StdioServerParameters(command=sys.executable, args=["-m", "services.mcp_gateway", "--stdio"],
                                     env=variables, cwd=str(ROOT))

    return params
