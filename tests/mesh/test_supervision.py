"""Runtime supervision: a child that dies while the mesh is up is restarted with backoff, logged, and shown
by `mlmesh status`; Ctrl-C still stops everything with exit code 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from services.core.topology import ServiceEndpoint
from services.mesh.health import SERVING, check_health
from services.mesh.supervision_state import describe_exit, read_state, state_path, write_state
from services.mesh.supervisor import ServiceFailed, Supervisor
from services.mesh.watch import Backoff, Slot, Watcher, service_slots
from tests.mesh.conftest import REPO, free_port, write_topology
from tests.mesh.test_up import pid_alive, read_json_line

RESTART_TIMEOUT_S = 30


def test_backoff_doubles_from_half_a_second_to_thirty():
    assert [Backoff().delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_exits_are_named_by_signal_or_code():
    assert (describe_exit(-signal.SIGKILL), describe_exit(3), describe_exit(0)) == ("SIGKILL", "code 3", "code 0")


class FakeChild:
    def __init__(self, pid: int, returncode: int | None = None) -> None:
        self.pid, self.returncode = pid, returncode
        self.process = SimpleNamespace(poll=lambda: self.returncode)

    def log_tail(self, lines: int = 20) -> str:
        return f"last words of {self.pid}"


def test_a_service_that_keeps_dying_is_retried_with_growing_capped_delays(tmp_path):
    attempts = []

    def respawn():
        attempts.append(time.monotonic())
        raise ServiceFailed("svc", "exited with code 3 before it was healthy", tmp_path / "svc.log", "boom")

    logged: list[str] = []
    slot = Slot("svc", "127.0.0.1:1", FakeChild(10, returncode=-signal.SIGKILL), respawn)
    watcher = Watcher(tmp_path, [slot], lambda message, tail: logged.append(f"{message}|{tail}"),
                      backoff=Backoff(initial_s=0.01, max_s=0.04))
    watcher.step()
    assert slot.state == "backoff" and slot.last_exit == "SIGKILL" and slot.up_since is None
    assert "svc (pid 10) exited: SIGKILL" in logged[0] and "last words of 10" in logged[0]
    deadline = time.monotonic() + 5
    while len(attempts) < 5 and time.monotonic() < deadline:
        watcher.step()
        time.sleep(0.002)
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert len(attempts) == 5 and gaps[0] >= 0.02 and all(g >= 0.04 for g in gaps[1:])   # 0.02, then capped
    assert slot.restarts == 5 and slot.last_error.startswith("exited with code 3")
    assert "restart 5 failed: exited with code 3" in logged[-1] and logged[-1].endswith("|boom")
    (saved,) = read_state(tmp_path)   # written on every change, by this (live) process
    assert saved["restarts"] == 5 and saved["last_exit"] == "SIGKILL" and saved["state"] == "backoff"


def test_a_restart_that_sticks_is_up_again_and_its_backoff_resets_later(tmp_path):
    slot = Slot("svc", "127.0.0.1:1", FakeChild(10, returncode=1), lambda: FakeChild(11))
    watcher = Watcher(tmp_path, [slot], lambda *_: None, backoff=Backoff(initial_s=0.0, stable_s=0.05))
    watcher.step()   # noticed
    watcher.step()   # restarted
    assert (slot.state, slot.current.pid, slot.restarts, slot.failures) == ("up", 11, 1, 1)
    assert slot.last_exit == "code 1" and slot.up_since is not None
    time.sleep(0.06)   # stayed up past stable_s: the next death is a first one again
    slot.current.returncode = -signal.SIGTERM
    watcher.step()
    assert slot.failures == 1 and slot.last_exit == "SIGTERM"


def test_state_of_a_supervisor_that_is_gone_is_ignored(tmp_path):
    write_state(tmp_path, [{"name": "registry"}])
    assert read_state(tmp_path) == [{"name": "registry"}]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state = json.loads(state_path(tmp_path).read_text())
    state["supervisor_pid"] = int(dead.stdout)
    state_path(tmp_path).write_text(json.dumps(state))
    assert read_state(tmp_path) is None


@pytest.fixture
def http_service(tmp_path, monkeypatch):
    """A package whose __main__ answers GET /healthz on a free port, a stand-in for a service."""
    port = free_port()
    package = tmp_path / "pkgs" / "svc_http"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(f"""
        import http.server, os
        if os.environ.get("SVC_CRASH"):
            raise SystemExit("cannot start: SVC_CRASH")
        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
        http.server.HTTPServer(("127.0.0.1", {port}), Ok).serve_forever()
    """))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "pkgs"))
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return ServiceEndpoint(name="svc", module="svc_http", port=port, protocol="http", health="/healthz")


def test_supervisor_restart_replaces_the_child_and_a_failed_one_stays_for_the_next_try(tmp_path, http_service):
    supervisor = Supervisor(home=tmp_path / "home", health_timeout_s=20, stop_timeout_s=5)
    try:
        (first,) = supervisor.start_all([http_service])
        (slot,) = service_slots(supervisor)
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait()
        supervisor.env = {"SVC_CRASH": "1"}
        with pytest.raises(ServiceFailed, match="exited with code 1 before it was healthy") as failed:
            slot.respawn()
        assert "cannot start: SVC_CRASH" in failed.value.log_tail
        assert supervisor.children[0] is not first and supervisor.children[0].process.poll() is not None
        supervisor.env = {}
        second = slot.respawn()
        assert supervisor.children == [second] and second.health == SERVING and second.pid != first.pid
    finally:
        assert supervisor.stop_all() == {"svc": -signal.SIGTERM}


def test_up_restarts_a_killed_registry_and_envoy_and_status_shows_it(tmp_path):
    ports = {name: free_port() for name in ("registry", "envoy", "admin")}
    topology = write_topology(tmp_path / "topology.yaml", {
        "registry": {"module": "services.registry", "host": "127.0.0.1", "port": ports["registry"],
                     "grpc_services": ["mlmesh.v1.Registry"]},
    }, envoy={"host": "127.0.0.1", "port": ports["envoy"], "admin_port": ports["admin"], "health_interval_s": 0.5})
    mesh_env = {"MLMESH_HOME": str(tmp_path / "home"), "MLMESH_TOPOLOGY_FILE": str(topology)}
    env = {**os.environ, **mesh_env}
    process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--json"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = read_json_line(process, 120)
        (registry,) = ready["services"]
        endpoint = ServiceEndpoint(name="registry", port=ports["registry"])
        os.kill(registry["pid"], signal.SIGKILL)
        status = _wait_status(env, "registry", lambda s: s.get("restarts") == 1 and s["health"] == SERVING)
        assert status["last_exit"] == "SIGKILL" and status["up_since"] is not None, status
        (child,) = status["processes"]
        assert child["pid"] != registry["pid"] and pid_alive(child["pid"]) and child["state"] == "up"
        assert check_health(endpoint) == SERVING

        os.kill(ready["envoy"]["pid"], signal.SIGKILL)
        envoy = _wait_status(env, "envoy", lambda s: s["processes"][0]["state"] == "up" and s["restarts"] == 1)
        assert envoy["last_exit"] == "SIGKILL" and envoy["processes"][0]["pid"] != ready["envoy"]["pid"]

        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert f"registry (pid {registry['pid']}) exited: SIGKILL" in stderr
        assert f"envoy (pid {ready['envoy']['pid']}) exited: SIGKILL" in stderr
        assert f"registry restarted (pid {child['pid']})" in stderr
        assert json.loads(stdout.strip().splitlines()[-1])["stopped"] == {"envoy": 0, "registry": 0}
        assert not state_path(tmp_path / "home").exists() and not pid_alive(child["pid"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_status(env: dict[str, str], service: str, done) -> dict:
    """`mlmesh status --json` as an operator runs it, until `done(row)`."""
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while True:
        result = subprocess.run([sys.executable, "-m", "services.mesh", "status", "--json"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        row = report.get("envoy") if service == "envoy" else \
            next(s for s in report["services"] if s["service"] == service)
        if row and "restarts" in row and done(row):
            return row
        assert time.monotonic() < deadline, report
        time.sleep(0.3)


def test_only_the_writer_clears_the_state(tmp_path):
    from services.mesh.supervision_state import clear_state

    write_state(tmp_path, [])
    state = json.loads(state_path(tmp_path).read_text())
    state_path(tmp_path).write_text(json.dumps({**state, "supervisor_pid": os.getppid()}))
    clear_state(tmp_path)   # another (live) `mlmesh up`'s file stays
    assert read_state(tmp_path) == []
    write_state(tmp_path, [])
    clear_state(tmp_path)
    assert not state_path(tmp_path).exists()
