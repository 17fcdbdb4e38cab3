"""Compiled artifacts carry the compiler's signature bundle over their files (as artifacts do).

Records registered before this revision get empty columns: serving refuses to deploy them until they
are compiled (and so signed) again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Spell out every table and column here (never build them from services.core.db.schema): a landed
migration is immutable. Record it with `python scripts/migration_lock.py --record`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ml_compiled_artifacts") as batch:
        batch.add_column(sa.Column("signature_media_type", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("signature_bundle", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("signature_key_id", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("ml_compiled_artifacts") as batch:
        batch.drop_column("signature_key_id")
        batch.drop_column("signature_bundle")
        batch.drop_column("signature_media_type")
