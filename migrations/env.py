"""Alembic environment. Two ways in:

- programmatic (services.core.db.migrate.upgrade_to_head): the caller passes a sync connection, already
  holding the migration lock, in `config.attributes["connection"]`;
- the `alembic` command: builds an async engine from MeshSettings().database_url and takes the same lock.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from services.core.db.engine import make_engine
from services.core.db.migrate import migration_connection
from services.core.db.schema import metadata
from services.core.settings import MeshSettings

config = context.config
# Only for `alembic revision --autogenerate` drafts; revisions themselves spell out every table.
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_cli() -> None:
    engine = make_engine(MeshSettings().database_url)
    try:
        async with migration_connection(engine) as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=MeshSettings().database_url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    if config.config_file_name is not None:
        from logging.config import fileConfig

        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_cli())
