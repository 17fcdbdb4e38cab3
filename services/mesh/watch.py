"""Runtime supervision for `mlmesh up`: a child that dies while the mesh is up is logged and restarted with
exponential backoff, and each change is written where `mlmesh status` reads it (`supervision_state`).

A polling loop on the main thread, not an asyncio task or a thread: children get a parent-death signal that
follows the thread which started them (`services.core.processes`), and a Ctrl-C must reach this loop as
KeyboardInterrupt so that `run_up` stops everything in order. Restarts go one at a time and wait for health
like the first start; meanwhile Envoy's active health checks keep traffic off the dead endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.mesh.supervision_state import describe_exit, write_state
from services.mesh.supervisor import ServiceFailed, Supervisor

LOG_TAIL_LINES = 20
# Envoy probes every service twice a second and each probe is an access-log line: left in, they would be
# the whole tail and hide the service's last real words.
_PROBE_NOISE = "grpc.health.v1.Health/"


def last_words(current: Any) -> str:
    lines = [line for line in current.log_tail(20 * LOG_TAIL_LINES).splitlines() if _PROBE_NOISE not in line]
    return "\n".join(lines[-LOG_TAIL_LINES:])


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 60.0   # up at least this long: its next death counts as a first one again

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))


@dataclass
class Slot:
    """One supervised process (a service, a replica, Envoy) across its restarts."""

    name: str
    address: str
    current: Any                         # ServiceProcess or EnvoyProcess: .process, .pid, .log_tail()
    respawn: Callable[[], Any]           # a new healthy `current`, or ServiceFailed
    service: str | None = None
    replica: int | None = None
    restarts: int = 0                    # attempts, successful or not
    failures: int = 0                    # deaths and failed attempts since it last stayed up (the backoff's)
    last_exit: str | None = None         # "SIGKILL", "code 3"
    last_exit_code: int | None = None
    last_exit_at: float | None = None
    last_error: str | None = None        # why the last restart failed, if it did
    up_since: float | None = field(default_factory=time.time)
    restarting: bool = False
    retry_at: float | None = None        # monotonic; set while it is down
    _up_at: float = field(default_factory=time.monotonic)

    @property
    def state(self) -> str:
        return "restarting" if self.restarting else "backoff" if self.retry_at is not None else "up"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "service": self.service or self.name, "replica": self.replica,
                "address": self.address, "pid": self.current.pid, "state": self.state, "restarts": self.restarts,
                "last_exit": self.last_exit, "last_exit_code": self.last_exit_code,
                "last_exit_at": self.last_exit_at, "last_error": self.last_error, "up_since": self.up_since}


def service_slots(supervisor: Supervisor) -> list[Slot]:
    return [Slot(c.name, c.endpoint.address, c, lambda name=c.name: supervisor.restart(name),
                 service=c.service, replica=c.replica) for c in supervisor.children]


class Watcher:
    def __init__(self, home: Path, slots: list[Slot], log: Callable[[str, str], None], *,
                 backoff: Backoff = Backoff(), poll_s: float = 0.5) -> None:
        self.home, self.slots, self.log, self.backoff, self.poll_s = home, slots, log, backoff, poll_s

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)

    def run(self) -> None:
        """Until a KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by `run_up`)."""
        self.save()
        while True:
            self.step()
            time.sleep(self.poll_s)

    def step(self) -> None:
        for slot in self.slots:
            if slot.retry_at is None:
                if (code := slot.current.process.poll()) is not None:
                    self._died(slot, code)
            elif time.monotonic() >= slot.retry_at:
                self._restart(slot)

    def save(self) -> None:
        write_state(self.home, [s.as_dict() for s in self.slots])

    def _died(self, slot: Slot, code: int) -> None:
        now = time.monotonic()
        uptime = now - slot._up_at
        if uptime >= self.backoff.stable_s:
            slot.failures = 0
        slot.failures += 1
        delay = self.backoff.delay(slot.failures)
        slot.last_exit, slot.last_exit_code, slot.last_exit_at = describe_exit(code), code, time.time()
        slot.up_since, slot.retry_at = None, now + delay
        self.save()
        self.log(f"{slot.name} (pid {slot.current.pid}) exited: {slot.last_exit} after {uptime:.0f}s up; "
                 f"restart {slot.restarts + 1} in {delay:.1f}s", last_words(slot.current))

    def _restart(self, slot: Slot) -> None:
        slot.restarts += 1
        slot.restarting, slot.retry_at = True, None
        self.save()
        try:
            slot.current = slot.respawn()
        except ServiceFailed as exc:
            slot.failures += 1
            delay = self.backoff.delay(slot.failures)
            slot.last_error, slot.retry_at = exc.reason, time.monotonic() + delay
            self.log(f"{slot.name}: restart {slot.restarts} failed: {exc.reason}; next try in {delay:.1f}s",
                     "\n".join(line for line in exc.log_tail.splitlines() if _PROBE_NOISE not in line))
        else:
            slot.last_error, slot.up_since, slot._up_at = None, time.time(), time.monotonic()
            self.log(f"{slot.name} restarted (pid {slot.current.pid}), healthy on {slot.address}", "")
        finally:
            slot.restarting = False
            self.save()
