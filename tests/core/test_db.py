"""The engine factory, the schema's behaviour on both backends, and time handling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.core.db import as_utc, make_engine, utcnow
from services.core.db.schema import artifact_aliases, artifacts, operations
from services.core.errors import InvalidArgument


@pytest.mark.parametrize(
    "url",
    ["mysql+aiomysql://u@h/db", "postgresql://postgres@127.0.0.1/x", "sqlite:///x.db", "not a url", ""],
)
def test_make_engine_refuses_other_urls(url):
    with pytest.raises(InvalidArgument) as caught:
        make_engine(url)
    assert caught.value.field == "database_url"


async def test_sqlite_creates_folder_and_sets_pragmas_on_every_connection(tmp_path):
    path = tmp_path / "deep" / "er" / "mlmesh.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.parent.is_dir()
        # Two connections at once, so both come from separate connects, not one reused.
        async with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
                assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
    finally:
        await engine.dispose()


def _operation_row(op_id: str, **overrides):
    now = utcnow()
    row = dict(
        id=op_id, kind="pull", service="puller", state="PENDING", progress={}, request={"a": [1, "b"]},
        cancel_requested=False, created_by="tester", created_at=now, updated_at=now,
    )  # fmt: skip
    return {**row, **overrides}


async def test_foreign_keys_are_enforced(engine):
    alias = dict(name="m", alias="prod", artifact_id="sha256:" + "0" * 64, updated_by="t", updated_at=utcnow())
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(artifact_aliases.insert().values(**alias))


async def test_json_none_is_sql_null_and_values_round_trip(engine):
    async with engine.begin() as conn:
        await conn.execute(operations.insert().values(**_operation_row("op-1", error=None)))
        await conn.execute(operations.insert().values(**_operation_row("op-2", error={"code": "X"})))
    async with engine.connect() as conn:
        nulls = (await conn.scalars(sa.select(operations.c.id).where(operations.c.error.is_(None)))).all()
        row = (await conn.execute(operations.select().where(operations.c.id == "op-2"))).one()
    assert nulls == ["op-1"]
    assert row.error == {"code": "X"} and row.request == {"a": [1, "b"]} and row.cancel_requested is False


async def test_times_come_back_as_the_same_utc_instant(engine):
    written = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(operations.insert().values(**_operation_row("op-t", created_at=written)))
    async with engine.connect() as conn:
        read = await conn.scalar(sa.select(operations.c.created_at).where(operations.c.id == "op-t"))
    assert as_utc(read) == written and as_utc(read).tzinfo is UTC


async def test_many_concurrent_writers(engine, database_url):
    # A second engine stands in for another process on the same database (SQLite: busy_timeout + WAL).
    other = make_engine(database_url)
    try:
        async def insert(target, index):
            async with target.begin() as conn:
                await conn.execute(operations.insert().values(**_operation_row(f"op-{index}")))

        await asyncio.gather(*(insert(engine if i % 2 else other, i) for i in range(40)))
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(operations)) == 40
    finally:
        await other.dispose()


async def test_large_binary_and_bigint_columns(engine):
    bundle = bytes(range(256)) * 40
    async with engine.begin() as conn:
        await conn.execute(
            artifacts.insert().values(
                id="sha256:" + "a" * 64, name=None, manifest_json="{}", framework="torch", format="safetensors",
                total_size=5 * 1024**4, labels={}, source_uri="", signature_media_type="", signature_bundle=bundle,
                signature_key_id="", created_by="t", created_at=utcnow(),
            )  # fmt: skip
        )
    async with engine.connect() as conn:
        row = (await conn.execute(artifacts.select())).one()
    assert row.signature_bundle == bundle and row.total_size == 5 * 1024**4 and row.name is None


def test_as_utc():
    assert as_utc(None) is None
    assert as_utc(datetime(2025, 1, 1, 8)) == datetime(2025, 1, 1, 8, tzinfo=UTC)
    plus_two = datetime(2025, 1, 1, 10, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(plus_two) == datetime(2025, 1, 1, 8, tzinfo=UTC) and as_utc(plus_two).tzinfo is UTC
    assert utcnow().tzinfo is UTC
