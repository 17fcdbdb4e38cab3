"""CircuitBreaker: stops sending work to an executor that keeps failing.

CLOSED counts executor failures; max_failures within window_seconds trips it OPEN, and while open every
request is refused with FailedPrecondition naming the breaker. After cooldown_seconds it is HALF_OPEN:
exactly one probe request goes through; its batch succeeding closes the breaker, failing re-opens it.
`reset()` closes it by hand. Outcomes are per executor call (a failed batch is one failure).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from pydantic import Field

from services.core.errors import FailedPrecondition
from services.serving.rules.registry import Rule, RuleParams

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class BreakerParams(RuleParams):
    max_failures: int = Field(5, ge=1, description="Executor failures within the window that trip it.")
    window_seconds: float = Field(30.0, gt=0, description="The window failures are counted in.")
    cooldown_seconds: float = Field(10.0, gt=0, description="Time open before a half-open probe.")


class CircuitBreaker(Rule):
    name = "CircuitBreaker"
    Params = BreakerParams

    def __init__(self, params: BreakerParams | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(params or BreakerParams())
        self._clock = clock
        self._failures: deque[float] = deque()
        self._state = CLOSED
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.params.cooldown_seconds:
            self._state, self._probe_out = HALF_OPEN, False
        return self._state

    def admit(self) -> bool:
        """Lets a request through or raises FailedPrecondition; True when the request is the half-open probe."""
        state = self.state
        if state == CLOSED:
            return False
        if state == HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        p = self.params
        if state == OPEN:
            retry = p.cooldown_seconds - (self._clock() - self._opened_at)
            raise FailedPrecondition(f"{self.name}: open after {p.max_failures} executor failures in "
                                     f"{p.window_seconds:g}s; retry in {retry:.1f}s")
        raise FailedPrecondition(f"{self.name}: half-open, a probe request is in flight")

    def record(self, ok: bool) -> None:
        """An executor call's outcome."""
        state, now = self.state, self._clock()
        if state == HALF_OPEN:
            if ok:
                self.reset()
            elif self._probe_out:
                self._trip(now)
            return
        if state == OPEN or ok:
            return  # outcomes of batches queued before it opened change nothing
        failures = self._failures
        failures.append(now)
        while failures and failures[0] <= now - self.params.window_seconds:
            failures.popleft()
        if len(failures) >= self.params.max_failures:
            self._trip(now)

    def release_probe(self) -> None:
        """The probe ended without an executor outcome (refused, cancelled, expired): let another through."""
        if self._state == HALF_OPEN:
            self._probe_out = False

    def reset(self) -> None:
        self._state, self._probe_out = CLOSED, False
        self._failures.clear()

    def _trip(self, now: float) -> None:
        self._state, self._opened_at, self._probe_out = OPEN, now, False
        self._failures.clear()
