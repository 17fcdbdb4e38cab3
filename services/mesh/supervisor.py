"""Process supervision for `mlmesh up`: one child process per service (per replica), health-gated start,
graceful stop.

A service with `replicas: N` runs N processes on the consecutive ports `port`..`port+N-1` (the ports Envoy
balances: `ServiceEndpoint.replica_ports`), each started with `--port`, logging to
`<name>-<i>.log` and reported as `<name>-<i>`. The replicas of one service start together (they do not
depend on one another) and each is waited for. A child that exits during start fails `mlmesh up`; once the
mesh is up, `services.mesh.watch` restarts it through `restart` (one child each, so one replica at a time).

Independent of the command line on purpose: tests and other front ends drive it directly.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.core.processes import die_with_parent_prefix
from services.core.topology import ServiceEndpoint, Topology
from services.mesh.health import DOWN, SERVING, check_health

LOG_TAIL_LINES = 40


class ServiceFailed(Exception):
    """A service exited or never became healthy; carries the tail of its log for the operator."""

    def __init__(self, name: str, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail


@dataclass
class ServiceProcess:
    endpoint: ServiceEndpoint       # a replica's own: its port, replicas=1
    process: subprocess.Popen
    log_path: Path
    log_offset: int                 # where this run's output starts in the (appended) log
    health: str = DOWN
    replica: int | None = None      # index among the service's replicas; None when it runs one process

    @property
    def service(self) -> str:
        return self.endpoint.name

    @property
    def name(self) -> str:
        return self.service if self.replica is None else f"{self.service}-{self.replica}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def startable(topology: Topology) -> list[ServiceEndpoint]:
    """Services whose module can be run with `python -m`; others appear in the topology before they exist."""
    found = []
    for endpoint in topology.services.values():
        try:
            if endpoint.module and importlib.util.find_spec(f"{endpoint.module}.__main__") is not None:
                found.append(endpoint)
        except ModuleNotFoundError:  # the parent package itself is missing
            continue
    return found


def replicas_of(endpoint: ServiceEndpoint) -> list[tuple[int | None, ServiceEndpoint]]:
    """(index, endpoint of that process); a single process keeps index None, its name and its own port flag."""
    if endpoint.replicas == 1:
        return [(None, endpoint)]
    metrics = endpoint.metrics_port  # replicas serve /metrics on consecutive ports too
    return [(i, endpoint.model_copy(update={"port": port, "replicas": 1,
                                            "metrics_port": None if metrics is None else metrics + i}))
            for i, port in enumerate(endpoint.replica_ports)]


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port. SO_REUSEADDR, as every server here sets it: the TIME_WAIT
    connections a stopped mesh leaves behind for a minute do not count, a live listener still does."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Supervisor:
    """Starts services in topology order, each only after the previous one is healthy."""

    home: Path
    env: Mapping[str, str] = field(default_factory=dict)    # extra variables for every child
    python: str = sys.executable
    health_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0                             # SIGTERM -> SIGKILL
    # Extra variables for one replica of a service (e.g. serving's own Triton folders): (service, index) -> env.
    replica_env: Callable[[str, int], Mapping[str, str]] | None = None
    children: list[ServiceProcess] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def start_all(self, endpoints: list[ServiceEndpoint],
                  on_ready: Callable[[ServiceProcess], None] | None = None) -> list[ServiceProcess]:
        for endpoint in endpoints:
            started = [self.start(replica_endpoint, replica=index) for index, replica_endpoint in replicas_of(endpoint)]
            for child in started:
                self.wait_healthy(child)
                if on_ready:
                    on_ready(child)
        return self.children

    def start(self, endpoint: ServiceEndpoint, *, replica: int | None = None) -> ServiceProcess:
        """One process of `endpoint`; a replica (index given) is told its port and logs on its own."""
        child = self._spawn(endpoint, replica)
        self.children.append(child)
        return child

    def restart(self, name: str) -> ServiceProcess:
        """A new process in place of the exited child `name` (same place in the stop order), once healthy.

        On failure the new process is stopped and left in `children` as the exited one, so a later try (and
        `stop_all`) finds it; the ServiceFailed says why, with its log tail."""
        index = next(i for i, c in enumerate(self.children) if c.name == name)
        old = self.children[index]
        child = self._spawn(old.endpoint, old.replica)
        self.children[index] = child
        try:
            self.wait_healthy(child)
        except ServiceFailed:   # (a Ctrl-C here leaves it to stop_all, in order)
            _terminate(child.process, self.stop_timeout_s)
            raise
        return child

    def _spawn(self, endpoint: ServiceEndpoint, replica: int | None) -> ServiceProcess:
        name = endpoint.name if replica is None else f"{endpoint.name}-{replica}"
        log_path = self.log_dir / f"{name}.log"
        if port_in_use(endpoint.host, endpoint.port):
            # A health check would answer from whatever holds the port, so refuse before starting.
            raise ServiceFailed(name, f"port {endpoint.port} on {endpoint.host} is already in use "
                                "(another `mlmesh up`?)", log_path, "")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        args = [self.python, "-m", endpoint.module]
        if replica is not None:
            args += ["--port", str(endpoint.port)]
            env.update(self.replica_env(endpoint.name, replica) if self.replica_env else {})
        with log_path.open("ab") as log:
            offset = log.tell()
            process = subprocess.Popen(
                [*die_with_parent_prefix(), *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                # Own session: a terminal's Ctrl-C reaches only `mlmesh up`, which then stops children in order.
                start_new_session=True,
            )
        return ServiceProcess(endpoint, process, log_path, offset, replica=replica)

    def wait_healthy(self, child: ServiceProcess) -> None:
        deadline = time.monotonic() + self.health_timeout_s
        while True:
            code = child.process.poll()
            if code is not None:
                raise ServiceFailed(child.name, f"exited with code {code} before it was healthy",
                                    child.log_path, child.log_tail())
            child.health = check_health(child.endpoint, timeout_s=1.0)
            if child.health == SERVING:
                return
            if time.monotonic() > deadline:
                raise ServiceFailed(child.name, f"not healthy after {self.health_timeout_s:.0f}s "
                                    f"(last: {child.health})", child.log_path, child.log_tail())
            time.sleep(0.2)

    def exited(self) -> ServiceProcess | None:
        """The first child that has exited, if any (the mesh is then degraded)."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every child (newest first, so dependants drain before what they call), wait, SIGKILL stragglers."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                _signal(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(child.process, signal.SIGKILL)
                child.process.wait()
        return {c.name: c.process.returncode for c in self.children}


def _terminate(process: subprocess.Popen, timeout_s: float) -> None:
    _signal(process, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        process.wait()


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass
