"""Session: one deployed model: its backend, rules, breaker, engine loop and executor, and the state
machine DEPLOYING -> READY <-> HALTED, any -> UNDEPLOYED (terminal).

The request path (`infer`): state check -> preprocess -> rules -> breaker -> engine -> postprocess.
The kill switch (`halt`) refuses new requests and fails every queued one synchronously, before it
awaits anything, so nothing queued reaches the model after it returns; the batch on the executor
finishes and is answered in full, or with `cancel_running` fails whole. No request is answered in part.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from services.core.errors import FailedPrecondition, InvalidArgument, MLMeshError, Unavailable
from services.serving.engine.config import BatchingConfig
from services.serving.engine.executor import Executor, SuspendableExecutor
from services.serving.engine.loop import EngineLoop
from services.serving.engine.sequences import SequenceLoop
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.base import Interface
from services.serving.interfaces.binding import bind_interface
from services.serving.interfaces.calls import Call
from services.serving.interfaces.results import CallOptions
from services.serving.rules.ruleset import RuleSet
from services.serving.sessions.snapshot import (
    Answer,
    InferTotals,
    ResponseMeta,
    SessionSnapshot,
    SessionState,
    SessionStats,
)

_NO_OPTIONS = CallOptions()


class Session:
    def __init__(self, session_id: str, backend: ModelBackend, batching: BatchingConfig, rules: RuleSet,
                 executor: Executor, *, model: str = "", executor_kind: str = "in_process",
                 on_change: Callable[[], None] | None = None) -> None:
        self.id = session_id
        self.backend = backend
        self.interface = backend.interface
        self.batching = batching
        self.rules = rules
        self.executor = executor
        self.executor_kind = executor_kind
        self.model = model or backend.artifact_id
        self.state = SessionState.DEPLOYING
        self.halt_reason = ""
        self.created_at = self.updated_at = datetime.now(UTC)
        self._on_change = on_change
        self._halts = 0  # a resume that raced a newer halt must not re-open the session
        self.totals = InferTotals()  # cumulative durations (KServe statistics); not part of snapshots
        loop_type = SequenceLoop if backend.autoregressive else EngineLoop
        self.loop = loop_type(executor, batching, on_outcome=rules.record)

    # ---- lifecycle ----
    async def start(self) -> None:
        """Starts the engine; the session stays DEPLOYING (refusing calls) until `ready()`."""
        await self.loop.start()

    def ready(self) -> None:
        if self.state is SessionState.DEPLOYING:  # a halt during the deploy wins
            self._set(SessionState.READY)

    @property
    def halts(self) -> int:
        """Times this session was halted since its deploy (metrics)."""
        return self._halts

    def halt_now(self, reason: str = "", *, cancel_running: bool = False) -> bool:
        """The synchronous part of a halt; False when it was already halted."""
        if self.state is SessionState.UNDEPLOYED:
            raise FailedPrecondition(f"session {self.id} is undeployed", field="session_id")
        if self.state is SessionState.HALTED:
            return False
        self.halt_reason = reason or "halted by an operator"
        self._halts += 1
        self.loop.halt(Unavailable(f"session {self.id} halted: {self.halt_reason}"), cancel_running=cancel_running)
        self._set(SessionState.HALTED)
        return True

    async def halt(self, reason: str = "", *, cancel_running: bool = False) -> SessionSnapshot:
        if self.halt_now(reason, cancel_running=cancel_running):
            await self.suspend_executor()
        return self.snapshot()

    async def suspend_executor(self) -> None:
        """Executors that answer outside serving too (Triton) stop doing so."""
        if isinstance(self.executor, SuspendableExecutor):
            await self.executor.suspend()

    async def resume(self) -> SessionSnapshot:
        if self.state is SessionState.UNDEPLOYED:
            raise FailedPrecondition(f"session {self.id} is undeployed", field="session_id")
        if self.state is SessionState.HALTED:
            halts = self._halts
            if isinstance(self.executor, SuspendableExecutor):
                await self.executor.restore()
            if self._halts == halts and self.state is SessionState.HALTED:
                self.halt_reason = ""
                self.loop.resume()
                self._set(SessionState.READY)
        return self.snapshot()

    async def undeploy(self) -> SessionSnapshot:
        if self.state is not SessionState.UNDEPLOYED:
            self._set(SessionState.UNDEPLOYED)
            await self.loop.close(Unavailable(f"session {self.id} undeployed"))
        return self.snapshot()

    def reset_breaker(self) -> None:
        if self.rules.breaker is not None:
            self.rules.breaker.reset()
            self._notify()

    # ---- the request path ----
    async def infer(self, call: Call, options: CallOptions | None = None) -> Answer:
        stats = self.loop.stats
        try:
            if self.state is not SessionState.READY:
                raise self._refusal()
            if call.interface != self.interface:
                raise InvalidArgument(f"session {self.id} serves the {self.interface} interface, "
                                      f"not {call.interface}", field="session_id")
            prepared = self.backend.preprocess(call)
            self.rules.check(prepared.view)
            probe = self.rules.admit()
        except MLMeshError:
            stats.requests_total += 1
            stats.requests_refused += 1
            raise
        options = options or _NO_OPTIONS
        try:
            done = await self.loop.infer(prepared.inputs, prepared.rows, steps=prepared.steps,
                                         priority=options.priority, timeout_s=options.timeout_s)
        finally:
            if probe:
                self.rules.breaker.release_probe()
        result = self.backend.postprocess(prepared, done.outputs)
        totals = self.totals
        totals.success += 1
        totals.queue_s += done.queue_s
        totals.compute_s += done.compute_s
        totals.last_ms = int(time.time() * 1000)
        return Answer(result, ResponseMeta(self.id, self.backend.artifact_id, done.batch_size,
                                           done.queue_s * 1e3, done.compute_s * 1e3))

    async def _call(self, call: Call, options: CallOptions | None) -> object:
        return (await self.infer(call, options)).result

    def as_interface(self) -> Interface:
        """This session as its interface's ABC (Predictor, Forecaster, ...)."""
        return bind_interface(self.interface, self._call)

    def _refusal(self) -> MLMeshError:
        if self.state is SessionState.HALTED:
            return Unavailable(f"session {self.id} halted: {self.halt_reason}")
        if self.state is SessionState.DEPLOYING:
            return Unavailable(f"session {self.id} is still deploying")
        return FailedPrecondition(f"session {self.id} is undeployed", field="session_id")

    # ---- figures ----
    def snapshot(self) -> SessionSnapshot:
        engine = self.loop.stats.snapshot(self.loop.queue_depth, self.loop.running)
        return SessionSnapshot(
            id=self.id, model=self.model, artifact_id=self.backend.artifact_id, interface=self.interface,
            state=self.state, executor=self.executor_kind, batching=self.batching, rule_pack=self.rules.pack,
            halt_reason=self.halt_reason, stats=SessionStats.of(engine, self.rules.trips, self.rules.breaker_state),
            created_at=self.created_at, updated_at=self.updated_at, rule_notes=self.rules.notes,
        )

    def _set(self, state: SessionState) -> None:
        self.state = state
        self.updated_at = datetime.now(UTC)
        self._notify()

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change()
