"""Bring a database to the newest migration, safely when several services start at once.

Every migrator first takes one mesh-wide lock: a transaction-scoped advisory lock on PostgreSQL, an
fcntl lock on a file beside the database on SQLite. Whoever waits runs `upgrade head` afterwards and
finds nothing left to do.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.core.db.engine import make_engine, sqlite_path
from services.core.errors import Unavailable
from services.core.settings import MeshSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"
# Any fixed bigint works; every mlmesh process must use the same one ("mlmesh" in ASCII).
ADVISORY_LOCK_KEY = 0x6D6C6D657368
LOCK_TIMEOUT_S = 300.0


@asynccontextmanager
async def _file_lock(path: Path, timeout_s: float) -> AsyncIterator[None]:
    # Non-blocking attempts in a loop, so a cancelled waiter never leaves a thread holding the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise Unavailable(f"timed out waiting for the migration lock {path}") from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@asynccontextmanager
async def migration_connection(
    engine: AsyncEngine, *, timeout_s: float = LOCK_TIMEOUT_S
) -> AsyncIterator[AsyncConnection]:
    """A connection that holds the migration lock; committed when the block succeeds."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'"))
            # Released by the commit (or the rollback), so a crashed migrator never holds it.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            yield conn
            await conn.commit()
        return
    path = sqlite_path(engine.url)
    if path is None:  # in-memory: private to this process, nothing to coordinate with
        async with engine.connect() as conn:
            yield conn
            await conn.commit()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    async with _file_lock(path.with_name(path.name + ".migrate.lock"), timeout_s):
        async with engine.connect() as conn:
            yield conn
            await conn.commit()


def alembic_config(connection: Connection | None = None, *, script_location: Path | None = None) -> Config:
    """An in-memory Alembic config; env.py uses `attributes["connection"]` when it is set."""
    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade_to_head(engine: AsyncEngine, *, script_location: Path | None = None) -> None:
    """Apply every migration not yet applied. Idempotent and safe to call from many processes at once."""

    def upgrade(sync_conn: Connection) -> None:
        command.upgrade(alembic_config(sync_conn, script_location=script_location), "head")

    async with migration_connection(engine) as conn:
        await conn.run_sync(upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision())


async def open_database(mesh: MeshSettings) -> AsyncEngine:
    """The mesh's database for a service: home folder made, engine built, schema at head."""
    mesh.ensure_home()
    engine = make_engine(mesh.database_url)
    await upgrade_to_head(engine)
    return engine
