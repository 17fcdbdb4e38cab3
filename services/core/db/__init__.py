"""Database layer: async engine (SQLite WAL / PostgreSQL), schema (SQLAlchemy Core), migrations.

Names are re-exported lazily, so `scripts/migration_lock.py` does not pay for SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.core.db.engine import make_engine
    from services.core.db.migrate import upgrade_to_head
    from services.core.db.schema import as_utc, metadata, utcnow

_EXPORTS = {
    "make_engine": "services.core.db.engine",
    "upgrade_to_head": "services.core.db.migrate",
    "as_utc": "services.core.db.schema",
    "metadata": "services.core.db.schema",
    "utcnow": "services.core.db.schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
