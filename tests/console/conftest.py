"""A whole mesh for the console's browser tests, started as a user would (`mlmesh up --json` with two serving
replicas, Envoy in front, the console service at /console/, the puller pointed at a local Hugging Face hub),
and headless Chromium (Debian's `chromium`, driven by Playwright through its executable path: no download).

The console is built first (`make console`: npm ci + vite build, skipped when current). Nothing here skips:
a machine without chromium or npm fails these tests loudly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright
from safetensors.torch import save as safetensors_save

from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings
from services.mesh.cli import CONSOLE_AUDIENCES, CONSOLE_SCOPES
from tests.e2e.conftest import READY_TIMEOUT_S, _read_json_line, _topology
from tests.mesh.conftest import free_port
from tests.puller.hub import LocalHub

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("MLMESH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts" / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HF_REPO = "org/console-mlp"
# Assertions wait for the page up to this long (Playwright's 5 s is short on a shared 2-core machine under load).
expect.set_options(timeout=15_000)
TAMPERED_REPO = "org/tampered-mlp"


@dataclass
class ConsoleMesh:
    home: Path
    envoy: str                          # host:port of the front door: the browser's only address
    serving_replicas: list[str]         # each replica's name, "serving@host:port"
    hub: LocalHub
    issuer: TokenIssuer = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.envoy}/console/"

    def token(self, audience: str) -> str:
        """An operator's token for the tests' own setup calls (publishing, deploying, load)."""
        return self.issuer.mint("console-setup", audience, ALL_SCOPES)

    def metadata(self, audience: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(audience)}"),)

    def console_token(self, **overrides) -> str:
        """What `mlmesh token --console` prints."""
        return self.issuer.mint(overrides.get("subject", "console-operator"),
                                overrides.get("audience", CONSOLE_AUDIENCES), overrides.get("scopes", CONSOLE_SCOPES),
                                ttl_s=overrides.get("ttl_s"))


def build_console() -> None:
    """The Makefile's target, so the tests see exactly what `make run` serves."""
    result = subprocess.run(["make", "-s", "console"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"make console failed:\n{result.stdout}\n{result.stderr}"
    assert (REPO / "console" / "dist" / "index.html").is_file()


def _hub() -> LocalHub:
    """A model big enough for the progress bar to move (streamed in chunks), and one served tampered."""
    hub = LocalHub().start()
    generator = torch.Generator().manual_seed(0)
    weights = safetensors_save({"net.0.weight": torch.randn(512, 1024, generator=generator),   # 2 MiB
                                "net.0.bias": torch.zeros(512)})
    hub.add_commit(HF_REPO, {"config.json": b'{"hidden": 512}', "model.safetensors": weights}, tags=("v1",))
    small = safetensors_save({"w": torch.randn(8, 8, generator=generator)})
    hub.add_commit(TAMPERED_REPO, {"config.json": b"{}", "model.safetensors": small})
    # Same size, one bit flipped: Hugging Face's client would accept it (it checks sizes only).
    hub.serve_instead[(TAMPERED_REPO, "model.safetensors")] = small[:-1] + bytes([small[-1] ^ 1])
    hub.chunk_bytes = 128 * 1024
    hub.chunk_delay_s = 0.05
    return hub


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[ConsoleMesh]:
    build_console()
    root = tmp_path_factory.mktemp("console")
    home, topology_file = root / "home", root / "topology.yaml"
    topology, serving_ports = _topology(topology_file)
    topology["services"]["console"] = {"module": "services.console", "host": "127.0.0.1", "port": free_port(),
                                       "protocol": "http", "health": "/healthz"}
    topology_file.write_text(yaml.safe_dump(topology, sort_keys=False))
    front = topology["envoy"]
    hub = _hub()
    env = {**os.environ, "MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology_file),
           "MLMESH_PULLER_HF_ENDPOINT": hub.url, "MLMESH_SERVING_EXECUTOR": "in_process",
           "MLMESH_SERVING_START_TRITON": "false"}
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(key, None)
    errors = root / "up.stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--json"], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)
    try:
        _read_json_line(process, READY_TIMEOUT_S, errors)
        issuer = TokenIssuer.from_settings(MeshSettings(home=home), AuthSettings())
        yield ConsoleMesh(home, f"127.0.0.1:{front['port']}", [f"serving@127.0.0.1:{p}" for p in serving_ports],
                          hub, issuer)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, errors.read_text()
        stopped = json.loads(process.stdout.readline())["stopped"]
        assert stopped["console"] == 0 and stopped["mlmesh-ml-mcp"] == 0, stopped   # drained, exit 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        hub.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab on a laptop-sized screen; its console errors fail the test."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, errors


def signed_in(page: Page, mesh: ConsoleMesh, path: str = "ml/skills") -> Page:
    page.goto(mesh.url + path)
    page.get_by_label("Mesh token").fill(mesh.console_token())
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Kill switch: halt every replica").wait_for()
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
