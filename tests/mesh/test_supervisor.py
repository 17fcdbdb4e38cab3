"""Process supervision: which services start, failures with the log tail, bounded graceful stop."""

from __future__ import annotations

import signal
import socket
import textwrap
import time

import pytest

from services.core.topology import ServiceEndpoint, Topology
from services.mesh.supervisor import ServiceFailed, Supervisor, startable
from tests.mesh.conftest import free_port


@pytest.fixture
def fake_services(tmp_path, monkeypatch):
    """Importable packages whose __main__ misbehaves in known ways."""
    bodies = {
        "svc_crash": "print('boom: cannot open the database', flush=True)\nraise SystemExit(3)\n",
        "svc_silent": "import time\nprint('starting', flush=True)\ntime.sleep(600)\n",
        "svc_stubborn": "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "print('ignoring SIGTERM', flush=True)\ntime.sleep(600)\n",
    }
    for name, body in bodies.items():
        package = tmp_path / "pkgs" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(textwrap.dedent(body))
    (tmp_path / "pkgs" / "svc_library").mkdir()
    (tmp_path / "pkgs" / "svc_library" / "__init__.py").write_text("")   # no __main__: not a service
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "pkgs"))
    return tmp_path


def endpoint(name: str, module: str) -> ServiceEndpoint:
    return ServiceEndpoint(name=name, module=module, port=free_port())


def test_startable_needs_a_main_module(fake_services):
    topology = Topology(services={e.name: e for e in [
        endpoint("registry", "services.registry"), endpoint("crash", "svc_crash"),
        endpoint("library", "svc_library"), endpoint("future", "services.not_built_yet"),
        endpoint("external", ""),
    ]})
    assert [e.name for e in startable(topology)] == ["registry", "crash"]


def test_a_crashing_service_fails_with_its_log_tail(fake_services):
    supervisor = Supervisor(home=fake_services / "home", health_timeout_s=30)
    with pytest.raises(ServiceFailed) as failed:
        supervisor.start_all([endpoint("crash", "svc_crash")])
    assert "exited with code 3" in failed.value.reason
    assert "boom: cannot open the database" in failed.value.log_tail
    assert failed.value.log_path == fake_services / "home" / "logs" / "crash.log"
    supervisor.stop_all()


def test_never_healthy_times_out_and_is_stopped(fake_services):
    supervisor = Supervisor(home=fake_services / "home", health_timeout_s=1.0, stop_timeout_s=5)
    with pytest.raises(ServiceFailed) as failed:
        supervisor.start_all([endpoint("silent", "svc_silent")])
    assert "not healthy after" in failed.value.reason and "DOWN" in failed.value.reason
    assert "starting" in failed.value.log_tail
    assert supervisor.stop_all() == {"silent": -signal.SIGTERM}


def test_stragglers_get_sigkill(fake_services):
    supervisor = Supervisor(home=fake_services / "home", stop_timeout_s=0.5)
    child = supervisor.start(endpoint("stubborn", "svc_stubborn"))
    log = child.log_path
    for _ in range(100):   # wait until it has installed its handler
        if "ignoring SIGTERM" in log.read_text():
            break
        time.sleep(0.05)
    assert supervisor.stop_all() == {"stubborn": -signal.SIGKILL}


def test_a_busy_port_is_refused_before_starting(fake_services):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = ServiceEndpoint(name="registry", module="services.registry", port=busy.getsockname()[1])
        supervisor = Supervisor(home=fake_services / "home")
        with pytest.raises(ServiceFailed, match="already in use"):
            supervisor.start(taken)
    assert supervisor.children == []


def test_a_real_registry_starts_healthy_and_drains(tmp_path):
    supervisor = Supervisor(home=tmp_path / "home", env={"MLMESH_HOME": str(tmp_path / "home")})
    registry = ServiceEndpoint(name="registry", module="services.registry", port=free_port())
    supervisor.env = {**supervisor.env, "MLMESH_TOPOLOGY_FILE": str(_topology(tmp_path, registry))}
    try:
        (child,) = supervisor.start_all([registry])
        assert child.health == "SERVING" and supervisor.exited() is None
    finally:
        assert supervisor.stop_all() == {"registry": 0}
    assert "registry stopped" in child.log_tail()


def _topology(tmp_path, registry: ServiceEndpoint):
    path = tmp_path / "topology.yaml"
    path.write_text(f"services:\n  registry: {{module: services.registry, port: {registry.port}}}\n")
    return path


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free_a_live_listener_is_not():
    """Ctrl-C then `mlmesh up` again at once: the last run's connections sit in TIME_WAIT on its ports for a
    minute, and the servers (SO_REUSEADDR) would bind fine, so the check must not call those ports in use."""
    from services.mesh.supervisor import port_in_use

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert port_in_use("127.0.0.1", port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()          # the server closes first: its side of the connection enters TIME_WAIT
    time.sleep(0.05)
    client.close()
    listener.close()
    plain = socket.socket()   # what the old check did: a bind without SO_REUSEADDR fails on the TIME_WAIT
    with pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    plain.close()
    assert not port_in_use("127.0.0.1", port)
