"""OperationRunner: runs a service's long work in asyncio tasks and records it in the OperationStore.

`start()` writes a PENDING operation and returns it at once; a supervisor task marks it RUNNING, runs
`work(reporter)` in its own task, and records how it ended. A ticker beside the work polls the
cancel flag (a cancel may come from any service's CancelOperation) and flushes throttled progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from mlmesh.v1 import operations_pb2
from services.core.errors import Cancelled, MLMeshError, Unavailable
from services.core.observability.metrics_operations import OperationMetrics
from services.core.operations.store import Operation, OperationStore

log = logging.getLogger(__name__)

RUNNING = operations_pb2.OPERATION_STATE_RUNNING
SHUTDOWN_MESSAGE = "interrupted by a shutdown"


class ProgressReporter:
    """What a work function gets: progress reports and the cancel flag of its operation."""

    def __init__(self, store: OperationStore, operation_id: str, *, min_interval_s: float = 0.1) -> None:
        self.operation_id = operation_id
        self._store = store
        self._min_interval_s = min_interval_s
        self._pending: tuple[int, int, str, str, str] | None = None
        self._last_write = float("-inf")
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()  # strong references until each write lands
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested; plain attribute read, safe from worker threads too."""
        return self._cancelled

    def _set_cancelled(self) -> None:
        self._cancelled = True

    async def check_cancel(self) -> None:
        """Raise Cancelled when a cancel was requested; also yields to the loop in tight loops."""
        await asyncio.sleep(0)
        if self._cancelled:
            raise Cancelled("operation cancelled", field="id")

    async def progress(self, done: int, total: int = 0, unit: str = "", stage: str = "", message: str = "") -> None:
        """Record progress; written at most every `min_interval_s`, the latest value always lands."""
        self._pending = (done, total, unit, stage, message)
        if asyncio.get_running_loop().time() - self._last_write >= self._min_interval_s:
            await self._write_shielded()

    async def flush(self, *, only_if_due: bool = False) -> None:
        """Write the held-back progress now (or only when the throttle interval has passed)."""
        if not only_if_due and self._writes:  # a write cut loose by a cancel lands before the final state
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._pending is None:
            return
        if only_if_due and asyncio.get_running_loop().time() - self._last_write < self._min_interval_s:
            return
        await self._write_shielded()

    async def _write_shielded(self) -> None:
        # A cancel of the work must not cut a DB write in half; the write finishes in its own task.
        write = asyncio.ensure_future(self._write())
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        await asyncio.shield(write)

    async def _write(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return
            self._last_write = asyncio.get_running_loop().time()
            await self._store.update_progress(self.operation_id, *pending)


Work = Callable[[ProgressReporter], Awaitable[Message | None]]


async def _invoke(work: Work, reporter: ProgressReporter) -> Message | None:
    # Any awaitable works, and a work function that raises before its first await fails like the rest.
    return await work(reporter)


@dataclass
class _Run:
    supervisor: asyncio.Task[None] | None = None
    work: asyncio.Task[Any] | None = None
    stopping: bool = False


class OperationRunner:
    """Runs operations of one service. Create it inside the running loop; `aclose()` on shutdown."""

    def __init__(
        self, store: OperationStore, *, cancel_poll_s: float = 0.25, progress_interval_s: float = 0.1,
        metrics: OperationMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self._cancel_poll_s = cancel_poll_s
        self._progress_interval_s = progress_interval_s
        self._runs: dict[str, _Run] = {}
        self._closing = False

    async def start(self, kind: str, request: dict[str, Any], work: Work, created_by: str = "") -> Operation:
        """Record a PENDING operation, start `work` in the background and return the operation."""
        if self._closing:
            raise Unavailable("the service is shutting down")
        op = await self.store.create(kind, request, created_by)
        run = self._runs[op.id] = _Run()
        run.supervisor = asyncio.create_task(self._supervise(op.id, work, run, kind), name=f"operation-{op.id}")
        run.supervisor.add_done_callback(lambda _task: self._runs.pop(op.id, None))
        return op

    async def join(self, op_id: str) -> Operation:
        """Wait until this runner has finished with `op_id` and return the stored operation."""
        run = self._runs.get(op_id)
        if run is not None and run.supervisor is not None:
            await asyncio.shield(run.supervisor)
        return await self.store.get(op_id)

    @property
    def active(self) -> list[str]:
        return list(self._runs)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop every running work task; each is recorded FAILED (ABORTED), like a restart would."""
        self._closing = True
        for run in list(self._runs.values()):
            if run.work is not None:
                run.work.cancel()
        supervisors = [run.supervisor for run in self._runs.values() if run.supervisor is not None]
        if not supervisors:
            return
        _done, pending = await asyncio.wait(supervisors, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _supervise(self, op_id: str, work: Work, run: _Run, kind: str = "") -> None:
        try:
            op = await self.store.set_running(op_id)
            if op.state != RUNNING:  # cancelled while pending: nothing to run
                return
            if self._closing:  # aclose() came between start() and here
                await self.store.fail(op_id, "ABORTED", SHUTDOWN_MESSAGE)
                return
            reporter = ProgressReporter(self.store, op_id, min_interval_s=self._progress_interval_s)
            began = asyncio.get_running_loop().time()
            with self.store.subscribe(op_id) as changed:
                run.work = asyncio.create_task(_invoke(work, reporter), name=f"operation-work-{op_id}")
                ticker = asyncio.create_task(self._tick(op_id, reporter, run, changed))
                try:
                    await asyncio.wait([run.work])
                finally:
                    run.stopping = True
                    changed.set()
                    await ticker
            await reporter.flush()
            if self.metrics is not None:  # before the end is stored: a watcher that sees it finds it counted
                outcome, result = _outcome_of(run.work, self._closing and not reporter.cancelled)
                self.metrics.finished(kind, outcome, asyncio.get_running_loop().time() - began, result)
            await self._record_outcome(op_id, run.work, reporter)
        except asyncio.CancelledError:
            # Our own task was cancelled (loop shutdown or an aclose timeout): leave it to recovery.
            if run.work is not None:
                run.work.cancel()
            raise
        except Exception:
            log.exception("operation %s: could not record its outcome", op_id)

    async def _tick(self, op_id: str, reporter: ProgressReporter, run: _Run, changed: asyncio.Event) -> None:
        """Until the work ends: wake on local changes or every `cancel_poll_s`, check the cancel flag."""
        while not run.stopping:
            try:
                async with asyncio.timeout(self._cancel_poll_s):
                    await changed.wait()
            except TimeoutError:
                pass
            changed.clear()
            if run.stopping:
                return
            try:
                await reporter.flush(only_if_due=True)
                if not reporter.cancelled and await self.store.is_cancel_requested(op_id):
                    reporter._set_cancelled()
                    if run.work is not None:
                        run.work.cancel()
            except Exception:  # a DB hiccup must not kill the watch; the next tick retries
                log.warning("operation %s: cancel poll failed", op_id, exc_info=True)

    async def _record_outcome(self, op_id: str, task: asyncio.Task[Any], reporter: ProgressReporter) -> None:
        if task.cancelled():
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = task.exception()
        if exc is None:
            result = task.result()
            if result is None or isinstance(result, Message):
                await self.store.succeed(op_id, result)
                return
            log.error("operation %s: work returned %s, not a protobuf message", op_id, type(result).__name__)
            await self.store.fail(op_id, "INTERNAL", "internal error")
        elif isinstance(exc, (asyncio.CancelledError, Cancelled)):
            if self._closing and not reporter.cancelled:
                await self.store.fail(op_id, "ABORTED", SHUTDOWN_MESSAGE)
            else:
                await self.store.mark_cancelled(op_id)
        elif isinstance(exc, MLMeshError):
            await self.store.fail(op_id, exc.code.name, exc.message, exc.field)
        else:
            log.error("operation %s failed", op_id, exc_info=(type(exc), exc, exc.__traceback__))
            await self.store.fail(op_id, "INTERNAL", "internal error")


def _outcome_of(task: asyncio.Task[Any], aborted: bool) -> tuple[str, Message | None]:
    """How the work ended as metrics name it (succeeded, failed, cancelled, aborted) and its result; the
    same reading `_record_outcome` stores."""
    if task.cancelled() or isinstance(task.exception(), (asyncio.CancelledError, Cancelled)):
        return ("aborted" if aborted else "cancelled"), None
    if task.exception() is not None:
        return "failed", None
    result = task.result()
    return ("succeeded", result) if result is None or isinstance(result, Message) else ("failed", None)
