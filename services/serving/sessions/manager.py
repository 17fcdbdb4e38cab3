"""SessionManager: deploys models as sessions and holds them: get, list, halt, halt-all, resume,
undeploy, and `watch`, which yields a snapshot of every session whenever states or figures change.

Settings, the lineage bus, the rule pack folder and the executor factory are injected by the
composition root; asyncio objects are made inside the running loop (watchers' events).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable

from services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.core.lineage import LineageBus, LineageEvent, normalize_entity
from services.core.settings import MLSettings
from services.serving.engine.config import BatchingConfig
from services.serving.engine.executor import Executor, InProcessExecutor, default_torch_threads, limit_blas_threads
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.calls import Call
from services.serving.interfaces.results import CallOptions
from services.serving.rules.pack import DEFAULT_PACK, RulePackLoader
from services.serving.sessions.session import Session
from services.serving.sessions.snapshot import Answer, HaltResult, SessionSnapshot, SessionState

log = logging.getLogger("mlmesh.serving.sessions")
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ExecutorFactory = Callable[[ModelBackend, str], Executor]   # (backend, session id) -> executor


# Models whose batches take less than this run on the event loop (see InProcessExecutor): below it the
# thread hop costs more than the model; above it a batch would hold up other calls' parsing.
INLINE_BELOW_S = 150e-6


def in_process_executor(backend: ModelBackend, session_id: str) -> Executor:
    """The fallback executor: the backend's batch function in one worker thread, or inline when tiny."""
    limit_blas_threads(default_torch_threads())   # numpy's matrix products (the numpy MLP): torch's share of cores
    threads = default_torch_threads() if backend.uses_torch else None
    return InProcessExecutor(backend.run, torch_threads=threads, name=f"mlmesh-{session_id}",
                             inline_below_s=INLINE_BELOW_S)


def session_entity(session_id: str) -> str:
    return f"session:{session_id}"


class SessionManager:
    def __init__(self, settings: MLSettings, lineage: LineageBus, *, rule_packs: RulePackLoader | None = None,
                 executor_factory: ExecutorFactory = in_process_executor, executor_kind: str = "in_process",
                 actor: str = "serving") -> None:
        self.settings = settings
        self.lineage = lineage
        self.rule_packs = rule_packs or RulePackLoader()
        self.executor_factory = executor_factory
        self.executor_kind = executor_kind
        self.actor = actor
        self._sessions: dict[str, Session] = {}
        self._watchers: set[asyncio.Event] = set()

    async def deploy(self, backend: ModelBackend, interface: str | None = None, batching: BatchingConfig | None = None,
                     rule_pack: str = DEFAULT_PACK, session_id: str | None = None, *, model: str = "",
                     executor: Executor | None = None, executor_kind: str | None = None,
                     actor: str | None = None) -> Session:
        """A READY session serving `backend` as `interface`; its lineage event is emitted before it returns."""
        interface = interface or backend.interface
        if interface != backend.interface:
            raise InvalidArgument(f"this model serves the {backend.interface} interface, not {interface}",
                                  field="interface")
        session_id = session_id or f"s-{uuid.uuid4().hex[:12]}"
        if not SESSION_ID.match(session_id):
            raise InvalidArgument("1-128 letters, digits, '_', '.', '-'", field="session_id")
        existing = self._sessions.get(session_id)
        if existing is not None and existing.state is not SessionState.UNDEPLOYED:
            raise AlreadyExists(f"session {session_id} exists", field="session_id")
        batching = batching or BatchingConfig.resolve(self.settings)
        rules = self.rule_packs.load(rule_pack).bind(backend.info, self.settings)
        session = Session(session_id, backend, batching, rules,
                          executor or self.executor_factory(backend, session_id), model=model,
                          executor_kind=executor_kind or self.executor_kind, on_change=self._notify)
        self._sessions[session_id] = session  # reserved before any await: a concurrent deploy sees it
        try:
            await session.start()
            await self.lineage.emit(LineageEvent(
                operation="deploy", actor=actor or self.actor, service="serving",
                inputs=[normalize_entity(backend.artifact_id)], outputs=[session_entity(session_id)],
                parameters={"interface": interface, "rule_pack": rules.pack, "executor": session.executor_kind,
                            "model": session.model, "max_batch_size": batching.max_batch_size,
                            "max_queue_delay_s": batching.max_queue_delay_s,
                            "max_queue_size": batching.max_queue_size, "iteration_level": batching.iteration_level},
            ))
            session.ready()  # served only once its lineage is recorded
            for note in rules.notes:
                log.warning("session %s (%s): %s", session_id, backend.artifact_id, note)
        except BaseException:
            await session.undeploy()
            if self._sessions.get(session_id) is session:
                del self._sessions[session_id]
            self._notify()
            raise
        return session

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id!r}", field="session_id")
        return session

    async def infer(self, session_id: str, call: Call, options: CallOptions | None = None) -> Answer:
        """The request path of the servicers: a call of another interface than the session's is a
        precondition failure (the session exists and the call is well-formed, just not for it)."""
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id!r}", field="session_id")
        if call.interface != session.interface:
            raise FailedPrecondition(f"session {session_id} serves the {session.interface} interface, "
                                     f"not {call.interface}", field="session_id")
        return await session.infer(call, options)

    def list(self, state: SessionState | None = None) -> list[Session]:
        return [s for s in self._sessions.values() if state is None or s.state is state]

    def snapshots(self, state: SessionState | None = None) -> list[SessionSnapshot]:
        return [s.snapshot() for s in self.list(state)]

    async def halt(self, session_id: str, reason: str = "", *, cancel_running: bool = False) -> SessionSnapshot:
        return await self.get(session_id).halt(reason, cancel_running=cancel_running)

    async def halt_all(self, reason: str = "", *, cancel_running: bool = False) -> list[HaltResult]:
        """Every live session stops at once (the synchronous part runs for all before any await); then
        executors that answer outside serving are suspended concurrently."""
        live = [s for s in self._sessions.values() if s.state is not SessionState.UNDEPLOYED]
        for session in live:
            session.halt_now(reason, cancel_running=cancel_running)
        outcomes = await asyncio.gather(*(s.suspend_executor() for s in live), return_exceptions=True)
        return [HaltResult(s.id, True, "" if not isinstance(o, BaseException)
                           else f"executor not suspended: {type(o).__name__}: {o}")
                for s, o in zip(live, outcomes)]

    async def resume(self, session_id: str) -> SessionSnapshot:
        return await self.get(session_id).resume()

    async def undeploy(self, session_id: str) -> SessionSnapshot:
        return await self.get(session_id).undeploy()

    async def close(self) -> None:
        """Undeploys everything (server shutdown)."""
        await asyncio.gather(*(s.undeploy() for s in self._sessions.values()), return_exceptions=True)

    async def watch(self, interval_s: float = 1.0, state: SessionState | None = None
                    ) -> AsyncIterator[list[SessionSnapshot]]:
        """Every session now, then again whenever a state or a figure changes, at most every `interval_s`."""
        interval = interval_s if interval_s > 0 else 1.0
        changed = asyncio.Event()
        self._watchers.add(changed)
        try:
            last: list[SessionSnapshot] | None = None
            last_at = float("-inf")
            while True:
                wait = last_at + interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                changed.clear()
                current = self.snapshots(state)
                if current != last:
                    last, last_at = current, time.monotonic()
                    yield current
                    continue
                try:  # figures are polled each interval; state changes wake the watcher at once
                    await asyncio.wait_for(changed.wait(), interval)
                except TimeoutError:
                    pass
        finally:
            self._watchers.discard(changed)

    def _notify(self) -> None:
        for event in self._watchers:
            event.set()
