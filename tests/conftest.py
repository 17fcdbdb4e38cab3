"""Shared fixtures. Database: every test that takes `database_url` or `engine` runs once on SQLite
(a file under tmp_path) and once on PostgreSQL (a fresh database per test, dropped afterwards)."""

from __future__ import annotations

import os
import secrets

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from services.core.db.engine import make_engine
from services.core.db.migrate import upgrade_to_head

# The server CI and the development machines run; override to point the suite elsewhere.
PG_ADMIN_DSN = os.environ.get("MLMESH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# A developer's shell settings (their MLMESH_DATABASE_URL, MLMESH_HOME, HF_TOKEN, OTEL_EXPORTER_OTLP_ENDPOINT...)
# must never reach a test or a mesh a test starts: a test writes only what it sets itself.
SHELL_SETTING_PREFIXES = ("MLMESH_", "HF_", "OTEL_")
SUITE_SETTINGS = frozenset({"MLMESH_TEST_POSTGRES_DSN", "MLMESH_CHROMIUM"})   # where the suite's own tools are


def shell_settings(environ) -> list[str]:
    """The names in `environ` a developer's shell could have set for a real mesh."""
    return [key for key in environ if key.startswith(SHELL_SETTING_PREFIXES) and key not in SUITE_SETTINGS]


# Cleared at import, before any session- or module-scoped fixture copies os.environ into a child's env...
for _key in shell_settings(os.environ):
    del os.environ[_key]


@pytest.fixture(autouse=True)
def no_shell_settings(monkeypatch):
    """...and again before each test, in case a fixture or an earlier test left one behind. A test's own
    monkeypatch.setenv runs after this and stands."""
    for key in shell_settings(os.environ):
        monkeypatch.delenv(key)


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    # Fail, never skip: a silently skipped backend is an untested backend.
    pytest.fail(
        f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({reason}). Start it with `pg_ctlcluster 15 main "
        "start`, set MLMESH_TEST_POSTGRES_DSN, or deselect these tests with `-m 'not postgres'`.",
        pytrace=False,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request, tmp_path):
    """An async SQLAlchemy URL of an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'mlmesh.db'}"
        return
    name = f"mlmesh_test_{secrets.token_hex(6)}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def engine(database_url):
    """An engine on a database migrated to head; disposed after the test."""
    engine = make_engine(database_url)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def exporter():
    """Spans finished under `tracer`, kept in memory for the test to read."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter):
    """A recording tracer of its own (not the process's), exporting to `exporter` as each span ends."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")
