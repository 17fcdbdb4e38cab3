"""OperationStore: durable long-running operations in the shared database, read back as protobuf.

Every state change is one conditional UPDATE (`... WHERE state IN (...)`), so concurrent writers
(the owning runner, any service's CancelOperation, a restart's recovery) can never move a terminal
operation again, on SQLite or PostgreSQL, without explicit row locks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from mlmesh.v1 import operations_pb2
from services.core import pagination
from services.core.db.schema import OPERATION_STATES, TERMINAL_STATES, as_utc, operations, utcnow
from services.core.errors import InvalidArgument, NotFound

Operation = operations_pb2.Operation
STATE_ENUM = {name: operations_pb2.OperationState.Value(f"OPERATION_STATE_{name}") for name in OPERATION_STATES}
STATE_NAME = {value: name for name, value in STATE_ENUM.items()}
TERMINAL = frozenset(STATE_ENUM[name] for name in TERMINAL_STATES)
ACTIVE_STATES = ("PENDING", "RUNNING")
CANCELLED_ERROR = {"code": "CANCELLED", "message": "cancelled by request", "field": ""}
INTERRUPTED_ERROR = {"code": "ABORTED", "message": "interrupted by a restart", "field": ""}
_TYPE_URL_PREFIX = "type.googleapis.com/"


def state_name(state: int | str | None) -> str | None:
    """A stored state name from an OperationState value or name; None for UNSPECIFIED / empty."""
    if state in (None, "", 0):
        return None
    if isinstance(state, str):
        name = state.upper().removeprefix("OPERATION_STATE_")
        if name in STATE_ENUM:
            return name
    elif state in STATE_NAME:
        return STATE_NAME[state]
    raise InvalidArgument(f"unknown operation state {state!r}", field="state")


def to_proto(row: Any) -> Operation:
    op = Operation(
        id=row.id,
        kind=row.kind,
        service=row.service,
        state=STATE_ENUM[row.state],
        progress=operations_pb2.Progress(**(row.progress or {})),
        created_by=row.created_by,
        cancel_requested=bool(row.cancel_requested),
    )
    op.request.update(row.request or {})
    if row.result_type:
        op.result.type_url = _TYPE_URL_PREFIX + row.result_type
        op.result.value = row.result_bytes or b""
    if row.error:
        op.error.CopyFrom(operations_pb2.OperationError(**row.error))
    op.created_at.FromDatetime(as_utc(row.created_at))
    op.updated_at.FromDatetime(as_utc(row.updated_at))
    if row.finished_at is not None:
        op.finished_at.FromDatetime(as_utc(row.finished_at))
    return op


def _json_object(value: Any, field: str) -> dict[str, Any]:
    # Round-trip through JSON: what is stored must be exactly what a later read gives back.
    if not isinstance(value, dict):
        raise InvalidArgument("must be a JSON object", field=field)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"not JSON-serializable: {exc}", field=field) from None


def _check_text(value: str, field: str, limit: int, *, required: bool = True) -> str:
    if required and not value:
        raise InvalidArgument("is required", field=field)
    if len(value) > limit:
        raise InvalidArgument(f"longer than {limit} characters", field=field)
    return value


class OperationStore:
    """Operations of one service (`service` names the owner of those it creates and recovers)."""

    def __init__(self, engine: AsyncEngine, service: str) -> None:
        self._engine = engine
        self.service = _check_text(service, "service", 32)
        self._subscribers: dict[str, set[asyncio.Event]] = {}

    # In-process change notifications: watchers here wake at once instead of waiting for a poll.
    @contextmanager
    def subscribe(self, op_id: str) -> Iterator[asyncio.Event]:
        """An Event set on every change this store makes to `op_id`; clear it after each wake."""
        event = asyncio.Event()
        self._subscribers.setdefault(op_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._subscribers.get(op_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._subscribers[op_id]

    def subscriber_count(self, op_id: str) -> int:
        return len(self._subscribers.get(op_id, ()))

    def _notify(self, op_ids: Iterable[str]) -> None:
        for op_id in op_ids:
            for event in self._subscribers.get(op_id, ()):
                event.set()

    async def create(self, kind: str, request: dict[str, Any], created_by: str = "") -> Operation:
        """A new PENDING operation owned by this service. `request` is shown to callers as is:
        the caller removes secrets (tokens, credentials) before passing it."""
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()),
            "kind": _check_text(kind, "kind", 32),
            "service": self.service,
            "state": "PENDING",
            "progress": {},
            "request": _json_object(request, "request"),
            "result_type": None,
            "result_bytes": None,
            "error": None,
            "cancel_requested": False,
            "created_by": _check_text(created_by, "created_by", 200, required=False),
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
        }
        async with self._engine.begin() as conn:
            await conn.execute(operations.insert().values(**values))
        return to_proto(SimpleNamespace(**values))  # the row as written, without reading it back

    async def get(self, op_id: str) -> Operation:
        _check_text(op_id, "id", 10_000)
        async with self._engine.connect() as conn:
            row = (await conn.execute(operations.select().where(operations.c.id == op_id))).one_or_none()
        if row is None:
            raise NotFound(f"no operation {op_id!r}", field="id")
        return to_proto(row)

    async def _transition(self, op_id: str, from_states: Iterable[str], **values: Any) -> Operation:
        """Apply `values` when the operation is in one of `from_states`; return it either way."""
        _check_text(op_id, "id", 10_000)
        values["updated_at"] = utcnow()
        if values.get("state") in TERMINAL_STATES:
            values["finished_at"] = values["updated_at"]
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                operations.update()
                .where(operations.c.id == op_id, operations.c.state.in_(list(from_states)))
                .values(**values)
            )
            row = (await conn.execute(operations.select().where(operations.c.id == op_id))).one_or_none()
        if row is None:
            raise NotFound(f"no operation {op_id!r}", field="id")
        if changed.rowcount:
            self._notify([op_id])
        return to_proto(row)

    async def set_running(self, op_id: str) -> Operation:
        """PENDING -> RUNNING. Returns the operation unchanged when it left PENDING (e.g. cancelled)."""
        return await self._transition(op_id, ["PENDING"], state="RUNNING")

    async def update_progress(
        self, op_id: str, done: int, total: int = 0, unit: str = "", stage: str = "", message: str = ""
    ) -> None:
        progress = {
            "done": max(0, int(done)),
            "total": max(0, int(total)),
            "unit": unit,
            "stage": stage,
            "message": message,
        }
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                operations.update()
                .where(operations.c.id == op_id, operations.c.state.in_(ACTIVE_STATES))
                .values(progress=progress, updated_at=utcnow())
            )
        if changed.rowcount:
            self._notify([op_id])

    async def succeed(self, op_id: str, result: Message | None = None) -> Operation:
        values: dict[str, Any] = {"state": "SUCCEEDED"}
        if result is not None:
            values["result_type"] = result.DESCRIPTOR.full_name
            values["result_bytes"] = result.SerializeToString(deterministic=True)
        return await self._transition(op_id, ACTIVE_STATES, **values)

    async def fail(self, op_id: str, code: str, message: str, field: str | None = "") -> Operation:
        error = {"code": code, "message": message, "field": field or ""}
        return await self._transition(op_id, ACTIVE_STATES, state="FAILED", error=error)

    async def request_cancel(self, op_id: str) -> Operation:
        """Cancel a PENDING operation at once; flag a RUNNING one for its runner; leave a finished one."""
        await self._transition(op_id, ["PENDING"], state="CANCELLED", cancel_requested=True, error=CANCELLED_ERROR)
        return await self._transition(op_id, ["RUNNING"], cancel_requested=True)

    async def mark_cancelled(self, op_id: str, message: str = CANCELLED_ERROR["message"]) -> Operation:
        error = {**CANCELLED_ERROR, "message": message}
        return await self._transition(op_id, ACTIVE_STATES, state="CANCELLED", error=error)

    async def is_cancel_requested(self, op_id: str) -> bool:
        async with self._engine.connect() as conn:
            flag = await conn.scalar(sa.select(operations.c.cancel_requested).where(operations.c.id == op_id))
        return bool(flag)

    async def recover_interrupted(self) -> int:
        """Mark this service's unfinished operations FAILED (ABORTED); call once at start-up."""
        now = utcnow()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                operations.update()
                .where(operations.c.service == self.service, operations.c.state.in_(ACTIVE_STATES))
                .values(state="FAILED", error=INTERRUPTED_ERROR, updated_at=now, finished_at=now)
                .returning(operations.c.id)  # PostgreSQL, and SQLite >= 3.35
            )
            ids = list(result.scalars())
        self._notify(ids)
        return len(ids)

    # Last in the class body: the method name shadows the builtin for anything defined after it.
    async def list(
        self, kind: str = "", state: int | str | None = None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Operation], str]:
        """Newest first. Returns (operations, next_page_token); the token is "" on the last page."""
        name = state_name(state)
        size = pagination.page_size(page_size)
        query = operations.select().order_by(operations.c.created_at.desc(), operations.c.id.desc())
        if kind:
            query = query.where(operations.c.kind == kind)
        if name:
            query = query.where(operations.c.state == name)
        if page_token:
            after_time, after_id = _decode_token(page_token, kind, name)
            query = query.where(
                sa.or_(
                    operations.c.created_at < after_time,
                    sa.and_(operations.c.created_at == after_time, operations.c.id < after_id),
                )
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(size + 1))).all()
        page = [to_proto(row) for row in rows[:size]]
        if len(rows) <= size:
            return page, ""
        last = rows[size - 1]
        return page, _encode_token(as_utc(last.created_at), last.id, kind, name)


# Keyset page tokens: the last row's (created_at, id) plus the filters they were issued for, so a
# token is stable while new operations arrive and cannot be replayed against a different query.
def _encode_token(created_at: datetime, op_id: str, kind: str, state: str | None) -> str:
    body = {"v": 1, "t": created_at.isoformat(), "i": op_id, "k": kind, "s": state or ""}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str, state: str | None) -> tuple[datetime, str]:
    bad = InvalidArgument("not a page token this server issued", field="page_token")
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(body, dict) or body.get("v") != 1:
            raise bad
        after_time = as_utc(datetime.fromisoformat(body["t"]))
        after_id = body["i"]
        if not isinstance(after_id, str):
            raise bad
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if body.get("k") != kind or body.get("s") != (state or ""):
        raise InvalidArgument("was issued for different filters", field="page_token")
    return after_time, after_id
