"""The generic `Operations` gRPC service. Every service that runs long work serves it.

Operations live in the shared database, so this answers for any service's operations; a cancel only
sets the flag (or cancels a PENDING one at once), and the owning runner stops the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.operations.store import TERMINAL, OperationStore


def _client_gone(context: Any) -> bool:
    done = getattr(context, "done", None)
    return bool(done()) if callable(done) else False


class OperationsServicer(operations_pb2_grpc.OperationsServicer):
    def __init__(self, store: OperationStore, *, poll_interval_s: float = 0.2) -> None:
        self._store = store
        self._poll_interval_s = poll_interval_s

    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: Any
    ) -> operations_pb2.Operation:
        return await self._store.get(request.id)

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: Any
    ) -> operations_pb2.ListOperationsResponse:
        ops, next_token = await self._store.list(
            kind=request.kind, state=request.state, page_size=request.page_size, page_token=request.page_token
        )
        return operations_pb2.ListOperationsResponse(operations=ops, next_page_token=next_token)

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: Any
    ) -> operations_pb2.Operation:
        return await self._store.request_cancel(request.id)

    async def WatchOperation(
        self, request: operations_pb2.WatchOperationRequest, context: Any
    ) -> AsyncIterator[operations_pb2.Operation]:
        """The operation now, then each change, until a terminal state. Changes made by this process
        wake the watch at once; those made by other processes are seen by polling."""
        # Subscribe before the first read, so a change between the read and the wait is not missed.
        with self._store.subscribe(request.id) as changed:
            last: operations_pb2.Operation | None = None
            while not _client_gone(context):
                changed.clear()
                op = await self._store.get(request.id)
                if op != last:
                    yield op
                    last = op
                if op.state in TERMINAL:
                    return
                try:
                    async with asyncio.timeout(self._poll_interval_s):
                        await changed.wait()
                except TimeoutError:
                    pass
