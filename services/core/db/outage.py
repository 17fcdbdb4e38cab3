"""A lost PostgreSQL connection is an outage, not a bug: it surfaces as `Unavailable`, so callers retry.

PostgreSQL restarting, or `pg_terminate_backend`, kills the connections in the pool. The pool's pre-ping
replaces idle ones silently; a statement in flight on a killed one fails with asyncpg's AdminShutdownError,
ConnectionDoesNotExistError or "connection is closed", and a connect during the restart with
ConnectionRefused or CannotConnectNowError. Every statement and connect of an engine passes two engine
events, so the translation lives here once instead of in every catalog: the interceptor answers UNAVAILABLE.
Lock timeouts, constraint violations and SQL errors are left alone: retrying those would not help.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.errors import Unavailable, outward

T = TypeVar("T")
MESSAGE = "the database is unreachable; retry"
# SQLSTATE class 08 (connection exception), and an administrator or a crash shutting the server down (57P0x).
_SQLSTATES = ("08", "57P01", "57P02", "57P03")
log = logging.getLogger("mlmesh.db")


def is_unreachable(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it wraps, says the connection to the server is gone or cannot be made."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):  # refused, reset, timed out: only engine I/O reaches these hooks
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        if str(getattr(exc, "sqlstate", None) or "").startswith(_SQLSTATES):
            return True
        # asyncpg's, SQLAlchemy's emulated and sqlalchemy.exc's InterfaceError share the name; other
        # InterfaceErrors (an operation already in progress) are misuse, not an outage.
        if type(exc).__name__ == "InterfaceError" and "connection is closed" in str(exc):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def unavailable(exc: BaseException) -> Unavailable:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    log.warning("database unreachable: %s: %s", type(root).__name__, outward(root))  # the operator's why
    return Unavailable(MESSAGE)


def _on_error(ctx: ExceptionContext) -> BaseException | None:
    if not (ctx.is_disconnect or is_unreachable(ctx.original_exception)):
        return None
    # A dead connection: have SQLAlchemy drop it, and the pool's older ones, so the next checkout reconnects.
    ctx.is_disconnect = True
    if ctx.is_pre_ping:
        return None  # the pool reconnects by itself; only that reconnect failing reaches the caller
    return unavailable(ctx.original_exception)


def _connect(dialect: Dialect, _record: Any, cargs: tuple, cparams: dict) -> Any:
    # A refused connect is an OSError, which SQLAlchemy passes on untouched (no handle_error), so catch it here.
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        if is_unreachable(exc):
            raise unavailable(exc) from exc
        raise


def install(engine: AsyncEngine) -> AsyncEngine:
    """Makes `engine` raise `Unavailable` for a lost or refused connection (PostgreSQL engines only)."""
    event.listen(engine.sync_engine, "handle_error", _on_error)
    event.listen(engine.sync_engine, "do_connect", _connect)
    return engine


async def retried(action: Callable[[], Awaitable[T]], *, within_s: float = 10.0) -> T:
    """`action()`, again after a short pause while it raises `Unavailable`, for up to `within_s` seconds.

    Only for actions that are safe to repeat: reads, and writes made conditional so that a second try
    after a commit whose answer was lost changes nothing. Never wrap a plain insert in this.
    """
    deadline, pause = time.monotonic() + within_s, 0.05
    while True:
        try:
            return await action()
        except Unavailable:
            if time.monotonic() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
