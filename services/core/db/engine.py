"""The one place that turns a database URL into an AsyncEngine, tuned per backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.core.db import outage
from services.core.errors import InvalidArgument

SQLITE = "sqlite+aiosqlite"
POSTGRES = "postgresql+asyncpg"

# busy_timeout goes first so the WAL switch (which needs a brief exclusive lock) waits instead of failing
# when several processes open the same file at once.
_SQLITE_PRAGMAS = ("busy_timeout=5000", "journal_mode=WAL", "foreign_keys=ON")


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise InvalidArgument(f"not a database URL: {exc}", field="database_url") from None


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser().absolute()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An AsyncEngine for `sqlite+aiosqlite://` (WAL, foreign keys) or `postgresql+asyncpg://` URLs."""
    parsed = _parse(url)
    if parsed.drivername == SQLITE:
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, echo=echo)
        # Pragmas are per connection (foreign_keys, busy_timeout), so set them on every new one.
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    if parsed.drivername == POSTGRES:
        engine = create_async_engine(
            parsed,
            echo=echo,
            pool_size=10,
            max_overflow=10,
            pool_timeout=30,
            pool_pre_ping=True,  # survive a PostgreSQL restart without failing the first call after it
            pool_recycle=1800,
        )
        # Calls caught by a restart or a killed backend answer UNAVAILABLE, not INTERNAL (see outage.py).
        return outage.install(engine)
    raise InvalidArgument(
        f"unsupported database driver {parsed.drivername!r}; use {SQLITE}:// or {POSTGRES}://",
        field="database_url",
    )
