"""What `mlmesh up`'s supervisor knows about its children, on disk for `mlmesh status`.

`$MLMESH_HOME/run/supervisor.json`, rewritten whole (temp file + rename) on every change, so a reader sees
the previous or the next state and never half of one. Health checks say whether a service answers now;
only the supervisor knows how often it died and how it died, hence the file. It names the supervisor's pid:
a file left behind by a `mlmesh up` that was killed outright is ignored.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any


def state_path(home: Path) -> Path:
    return home / "run" / "supervisor.json"


def describe_exit(returncode: int | None) -> str | None:
    """`SIGKILL` for a process killed by a signal (Popen's negative code), `code 3` for one that exited."""
    if returncode is None:
        return None
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


def write_state(home: Path, children: list[dict[str, Any]]) -> None:
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps({"supervisor_pid": os.getpid(), "children": children}, indent=1))
    os.replace(temp, path)


def clear_state(home: Path) -> None:
    """On a stop: nothing supervises any more. Only our own file: a second `mlmesh up` on the same home that
    fails on a busy port must not erase the running one's."""
    path = state_path(home)
    try:
        if json.loads(path.read_text()).get("supervisor_pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def read_state(home: Path) -> list[dict[str, Any]] | None:
    """The children of the `mlmesh up` running on `home`, or None when none runs (or the file is unreadable)."""
    try:
        state = json.loads(state_path(home).read_text())
        pid = int(state["supervisor_pid"])
        children = list(state["children"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return children if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive, though then hardly our supervisor
        return True
    return True


def service_summary(children: list[dict[str, Any]], service: str) -> dict[str, Any] | None:
    """A service's processes (its replicas) as `mlmesh status` shows them: restarts added up, the latest
    exit, and `up_since` of the process up the shortest while (None while any is down)."""
    mine = [c for c in children if c.get("service") == service]
    if not mine:
        return None
    exits = [c for c in mine if c.get("last_exit_at") is not None]
    latest = max(exits, key=lambda c: c["last_exit_at"]) if exits else {}
    ups = [c.get("up_since") for c in mine]
    return {"restarts": sum(int(c.get("restarts", 0)) for c in mine), "last_exit": latest.get("last_exit"),
            "last_exit_at": latest.get("last_exit_at"),
            "up_since": None if None in ups else max(ups), "processes": mine}
