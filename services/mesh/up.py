"""`mlmesh up`: start the services, show where they are, optionally seed the demo, then restart what dies
(`services.mesh.watch`) until a signal."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from services.core.settings import ServerSettings
from services.mesh import output as out
from services.mesh.client import MeshClient
from services.mesh.envoy.config import load_envoy_options, topology_wants_envoy
from services.mesh.envoy.process import EnvoyProcess, start_envoy
from services.mesh.metrics_targets import print_targets, scrape_targets
from services.mesh.supervision_state import clear_state
from services.mesh.supervisor import ServiceFailed, ServiceProcess, Supervisor, startable
from services.mesh.watch import Slot, Watcher, service_slots

if TYPE_CHECKING:   # the demo pulls in torch; commands other than `up --demo` should not pay for it
    from services.mesh.demo.seed import DemoResult

REGISTRY = "registry"
SERVING = "serving"


def _replica_env(home: Path) -> Callable[[str, int], dict[str, str]]:
    """Each serving replica starts its own local Triton: give it its own repository (a starting Triton
    empties its folder) and log, unless the operator named them. With MLMESH_TRITON_URL every replica
    writes where that one Triton reads (shared storage), so nothing is set."""
    def env(service: str, index: int) -> dict[str, str]:
        if service != SERVING or os.environ.get("MLMESH_TRITON_URL"):
            return {}
        wanted = {"MLMESH_TRITON_MODEL_REPOSITORY": home / "triton" / f"{service}-{index}" / "models",
                  "MLMESH_TRITON_LOG_FILE": home / "logs" / f"triton-{service}-{index}.log"}
        return {key: str(value) for key, value in wanted.items() if key not in os.environ}
    return env


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM takes the Ctrl-C path: asyncio.run (the demo) and the wait loop both stop cleanly on it.
    signal.raise_signal(signal.SIGINT)


def run_up(client: MeshClient, *, demo: bool, as_json: bool, health_timeout_s: float, metrics: bool = False) -> int:
    """Returns the exit code: 0 after a signal-driven stop, 1 when a service failed to start."""
    home = client.mesh.ensure_home()
    # The registry first: it is the system of record the other services call as they start.
    endpoints = sorted(startable(client.topology), key=lambda e: e.name != REGISTRY)
    if not endpoints:
        out.fail("no service of the topology can be started here (no module with a __main__)")
    grace = ServerSettings().shutdown_grace_s
    # Children read the same state and topology, whatever their working directory resolves.
    env = {"MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(client.mesh.topology_file.absolute())}
    if topology_wants_envoy(client.mesh.topology_file):
        front = load_envoy_options(client.mesh.topology_file)
        env["MLMESH_MCP_ALLOWED_HOSTS"] = json.dumps([f"{front.host}:{front.port}"])  # agents may come via Envoy
    supervisor = Supervisor(
        home=home,
        env=env,
        health_timeout_s=health_timeout_s,
        stop_timeout_s=grace + 5.0,
        replica_env=_replica_env(home),
    )
    con = out.console()
    # A shell's background job inherits SIGINT ignored; `up` must still stop on it.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    code, envoy, watcher = 0, None, None
    try:
        supervisor.start_all(endpoints, on_ready=None if as_json else
                             lambda c: con.print(f"[green]✓[/] {c.name} healthy on {c.endpoint.address}"))
        envoy = _start_envoy(client, home, health_timeout_s)
        report = _report(client, supervisor.children)
        if envoy is not None:
            report["envoy"] = {"address": envoy.address, "admin": envoy.admin_url, "pid": envoy.pid,
                               "log_file": str(envoy.log_path), "config": str(envoy.config)}
        if metrics:
            report["metrics"] = scrape_targets(supervisor.children, envoy.admin_url if envoy is not None else None)
        if not as_json:
            _print_endpoints(client, supervisor.children, report)
            if metrics:
                print_targets(report["metrics"])
        if demo:
            if REGISTRY not in {c.service for c in supervisor.children}:
                out.fail("the demo needs the registry, which this topology does not start")
            result = _run_demo(client, as_json)
            report["demo"] = _demo_dict(result)
            if not as_json:
                _print_demo(result)
        if as_json:
            typer.echo(json.dumps(report, separators=(",", ":")))   # one line: scripts readline() it
        else:
            con.print("[bold]mesh is up[/]; Ctrl-C stops it")
        slots = service_slots(supervisor)
        if envoy is not None:
            slots.append(Slot("envoy", envoy.address, envoy,
                              lambda: _start_envoy(client, home, health_timeout_s)))
        watcher = Watcher(home, slots, _print_restart)
        watcher.run()   # restarts what dies; returns only through Ctrl-C / SIGTERM
    except ServiceFailed as exc:
        _print_failure(exc)
        code = 1
    except KeyboardInterrupt:
        code = 0
    finally:
        # A second Ctrl-C must not cut the drain short; stop_all is bounded by its own timeout.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not as_json and supervisor.children:
            con.print("stopping…")
        if watcher is not None:   # Envoy may have been restarted: stop the one running now
            envoy = watcher.slot("envoy").current if envoy is not None else None
        stopped = {"envoy": envoy.stop(grace)} if envoy is not None else {}
        stopped |= supervisor.stop_all()
        clear_state(home)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
        if as_json:
            typer.echo(json.dumps({"stopped": stopped}, separators=(",", ":")))
        else:
            for name, rc in stopped.items():
                con.print(f"{name} stopped (exit code {rc})")
    return code


def _start_envoy(client: MeshClient, home: Path, health_timeout_s: float) -> EnvoyProcess | None:
    """The front door, when the topology has an `envoy:` section: started once every service is healthy."""
    if not topology_wants_envoy(client.mesh.topology_file):
        return None
    options = load_envoy_options(client.mesh.topology_file)
    return start_envoy(home, client.topology, options, ready_timeout_s=health_timeout_s)


def _report(client: MeshClient, children: list[ServiceProcess]) -> dict[str, Any]:
    started = {c.service for c in children}
    report: dict[str, Any] = {
        # One entry per process: a replicated service has one per replica (`name` <service>-<i>, `replica` i).
        "services": [
            {"service": c.service, "name": c.name, "replica": c.replica, "address": c.endpoint.address,
             "health": c.health, "pid": c.pid, "log_file": str(c.log_path), "grpc_services": c.endpoint.grpc_services}
            for c in children
        ],
        "not_started": sorted(n for n in client.topology.services if n not in started),
        "home": str(client.mesh.home),
    }
    if REGISTRY in started:
        address = client.endpoint(REGISTRY).address
        report["operator_token"] = client.mint(REGISTRY)
        report["grpcurl"] = (f'grpcurl -plaintext -H "authorization: Bearer $(mlmesh token --aud registry)" '
                             f"{address} mlmesh.v1.Registry/ListSkills")
    return report


def _print_endpoints(client: MeshClient, children: list[ServiceProcess], report: dict[str, Any]) -> None:
    con = out.console()
    rows = [(c.name, c.endpoint.address, f"{c.health}", c.pid, c.log_path) for c in children]
    rows += [(n, client.topology.services[n].address, "not built yet", "", "") for n in report["not_started"]]
    if "envoy" in report:
        envoy = report["envoy"]
        rows.append(("envoy (front door)", envoy["address"], "READY", envoy["pid"], envoy["log_file"]))
    con.print(out.table("mlmesh endpoints", ["service", "address", "health", "pid", "log file"], rows))
    if "operator_token" in report:
        con.print("development operator token (audience registry):", style="bold")
        con.print(report["operator_token"], soft_wrap=True, markup=False)   # whole, never cropped
        con.print("try:", style="bold")
        con.print(report["grpcurl"], soft_wrap=True, markup=False)
        if "MLMESH_HOME" in os.environ:
            con.print(f"(with MLMESH_HOME={client.mesh.home} for `mlmesh token`)", style="dim", markup=False)
    if "envoy" in report and any(c.service == "console" for c in children):
        con.print(f"web console: http://{report['envoy']['address']}/console/  (sign in with the token "
                  "`mlmesh token --console` prints)", style="bold", markup=False)


def _run_demo(client: MeshClient, as_json: bool) -> DemoResult:
    from services.mesh.demo.seed import seed   # torch is imported only when the demo runs

    return out.run(seed(client, None if as_json else out.console()))


def _demo_dict(result: DemoResult) -> dict[str, Any]:
    return {
        "artifacts": [{"name": a.name, "id": a.id, "aliases": list(a.aliases), "size": a.total_size}
                      for a in result.artifacts],
        "skills": [{"name": r.version.name, "version": r.version.version, "number": r.version.number,
                    "created": r.created} for r in result.skills],
    }


def _print_demo(result: DemoResult) -> None:
    con = out.console()
    con.print(out.table("demo artifacts", ["name", ("id", {"no_wrap": True}), "aliases", "size"],
                        [(a.name, out.short(a.id, 16), out.alias_names(a.aliases), out.human_size(a.total_size))
                         for a in result.artifacts]))
    con.print(out.table("seed skills", ["name", "version", "#", "state"],
                        [(r.version.name, r.version.version, r.version.number,
                          "created" if r.created else "already published") for r in result.skills]))


def _print_restart(message: str, log_tail: str) -> None:
    # stderr in both modes: with --json, stdout carries only the ready and stopped lines.
    err = out.err_console()
    err.print(f"[bold yellow]supervisor:[/] {out.escape(message)}", soft_wrap=True)
    if log_tail:
        err.print(log_tail, markup=False, highlight=False, soft_wrap=True, style="dim")


def _print_failure(exc: ServiceFailed) -> None:
    err = out.err_console()
    err.print(f"[bold red]error:[/] {out.escape(str(exc))}", soft_wrap=True)
    if exc.log_tail:   # as the service wrote it: never re-wrapped, never read as markup
        err.print(f"--- last lines of {exc.log_path} ---", style="dim", markup=False, soft_wrap=True)
        err.print(exc.log_tail, markup=False, highlight=False, soft_wrap=True)
