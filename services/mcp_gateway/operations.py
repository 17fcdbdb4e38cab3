"""Following a durable operation (pull, compile, skill run) to its end for a tool call.

Each change WatchOperation sends becomes an MCP progress notification (a no-op unless the client gave
a progressToken). A client cancel cancels this task: the watch stream is cancelled with it and the
operation itself is cancelled on the backend, so nothing keeps running for an agent that left.
"""

from __future__ import annotations

import logging

import anyio
import grpc

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.mcp_gateway.catalog import ToolCall
from services.mcp_gateway.errors import ToolFailure, from_operation_error

log = logging.getLogger("mlmesh.mcp.operations")
_S = operations_pb2
_CANCEL_GRACE_S = 5.0
_TERMINAL = (_S.OPERATION_STATE_SUCCEEDED, _S.OPERATION_STATE_FAILED, _S.OPERATION_STATE_CANCELLED)


class ProgressTracker:
    """MCP progress must increase with every notification, while an operation's `done` restarts at each
    stage (bytes downloaded, then files stored): the value sent is the number of stages begun so far plus
    0.99 of the current stage's fraction, and the message says what is happening. An update whose value
    would not increase (a new message within the same fraction) is nudged just above the last one."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._stages = -1
        self._sent = -1.0
        self._text = ""

    def step(self, progress: _S.Progress) -> tuple[float, str] | None:
        if progress.stage != self._stage:
            self._stage, self._stages = progress.stage, self._stages + 1
        fraction = min(progress.done / progress.total, 1.0) if progress.total > 0 else 0.0
        amount = f"{progress.done}/{progress.total}" if progress.total > 0 else str(progress.done)
        text = f"{progress.stage or 'pending'}: {amount} {progress.unit}".rstrip()
        text = f"{text} ({progress.message})" if progress.message else text
        if text == self._text:
            return None
        value = round(self._stages + 0.99 * fraction, 6)
        if value <= self._sent:
            value = round(self._sent + 1e-4, 6)
        self._sent, self._text = value, text
        return value, text


async def follow(call: ToolCall, op: _S.Operation) -> _S.Operation:
    """The operation's final state; raises ToolFailure unless it SUCCEEDED."""
    stub = call.stub(operations_pb2_grpc.OperationsStub)
    tracker = ProgressTracker()
    final = op
    stream = stub.WatchOperation(_S.WatchOperationRequest(id=op.id), metadata=call.metadata(),
                                 timeout=call.settings.operation_timeout_s)
    try:
        async for update in stream:
            final = update
            step = tracker.step(update.progress)
            if step is not None:
                await call.progress(step[0], None, step[1])
    except anyio.get_cancelled_exc_class():
        stream.cancel()
        if final.state not in _TERMINAL:
            await _cancel(call, op.id)
        raise
    except grpc.aio.AioRpcError as exc:
        failure = call.failure(exc)
        failure.message += f"; operation {op.id} was not cancelled: see data.ml.operation_status"
        raise failure from None
    if final.state == _S.OPERATION_STATE_SUCCEEDED:
        return final
    if final.state == _S.OPERATION_STATE_CANCELLED:
        raise ToolFailure("CANCELLED", final.error.message or f"operation {op.id} was cancelled")
    if final.state == _S.OPERATION_STATE_FAILED:
        e = final.error
        raise from_operation_error(e.code, f"{e.message} (operation {op.id})", e.field, call.spec.renames)
    raise ToolFailure("UNAVAILABLE", f"operation {op.id} did not finish ({_S.OperationState.Name(final.state)})")


async def _cancel(call: ToolCall, op_id: str) -> None:
    """Shielded: this runs while the tool call itself is being cancelled."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_GRACE_S):
        try:
            await call.stub(operations_pb2_grpc.OperationsStub).CancelOperation(
                _S.CancelOperationRequest(id=op_id), metadata=call.metadata(), timeout=_CANCEL_GRACE_S)
            log.info("cancelled operation %s (request id %s)", op_id, call.request_id)
        except grpc.aio.AioRpcError as exc:
            log.warning("could not cancel operation %s: %s %s", op_id, exc.code().name, exc.details())
