"""Initial schema: artifacts, aliases, compiled artifacts, lineage, skills, experiments, runs, operations.

Written out explicitly (never generated from services.core.db.schema at run time): a landed migration
is immutable and hashed into migrations/LOCK; later schema changes get a new revision.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), unique=False)


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(71), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("manifest_json", sa.Text(), nullable=False),
        sa.Column("framework", sa.String(64), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("signature_media_type", sa.String(200), nullable=False),
        sa.Column("signature_bundle", sa.LargeBinary(), nullable=True),
        sa.Column("signature_key_id", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
    )
    _index("artifacts", "name")
    _index("artifacts", "created_at")

    op.create_table(
        "artifact_aliases",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("artifact_id", sa.String(71), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _time("updated_at"),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], name="fk_artifact_aliases_artifact_id_artifacts"),
        sa.PrimaryKeyConstraint("name", "alias", name="pk_artifact_aliases"),
    )

    op.create_table(
        "ml_compiled_artifacts",
        sa.Column("id", sa.String(71), nullable=False),
        sa.Column("source_artifact_id", sa.String(71), nullable=False),
        sa.Column("compiler", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("tool_versions", sa.JSON(), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=False),
        sa.Column("triton_platform", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["source_artifact_id"], ["artifacts.id"], name="fk_ml_compiled_artifacts_source_artifact_id_artifacts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ml_compiled_artifacts"),
    )
    _index("ml_compiled_artifacts", "source_artifact_id")
    _index("ml_compiled_artifacts", "compiler")

    op.create_table(
        "lineage_events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("operation_id", sa.String(64), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        _time("time"),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_events"),
    )
    _index("lineage_events", "operation")
    _index("lineage_events", "time")

    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("entity", sa.String(400), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["lineage_events.id"], name="fk_lineage_edges_event_id_lineage_events"),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_edges"),
    )
    _index("lineage_edges", "event_id")
    _index("lineage_edges", "entity", "role")

    op.create_table(
        "ml_skills",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.String(64), nullable=False),
        sa.Column("version_count", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_ml_skills"),
    )

    op.create_table(
        "ml_skill_versions",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("lock", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(["name"], ["ml_skills.name"], name="fk_ml_skill_versions_name_ml_skills"),
        sa.PrimaryKeyConstraint("version", name="pk_ml_skill_versions"),
        sa.UniqueConstraint("name", "number", name="uq_ml_skill_versions_name_number"),
    )
    _index("ml_skill_versions", "name")

    op.create_table(
        "ml_experiments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ml_experiments"),
        sa.UniqueConstraint("name", name="uq_ml_experiments_name"),
    )

    op.create_table(
        "ml_tests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["ml_experiments.id"], name="fk_ml_tests_experiment_id_ml_experiments"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ml_tests"),
        sa.UniqueConstraint("experiment_id", "name", name="uq_ml_tests_experiment_id_name"),
    )
    _index("ml_tests", "experiment_id")

    op.create_table(
        "ml_skill_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("skill_name", sa.String(200), nullable=False),
        sa.Column("skill_version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=True),
        sa.Column("resolved", sa.JSON(), nullable=True),
        sa.Column("reresolved_aliases", sa.Boolean(), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=True),
        sa.Column("test_id", sa.String(36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failed_step", sa.String(100), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        _time("started_at"),
        _time("finished_at", nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["skill_version"], ["ml_skill_versions.version"], name="fk_ml_skill_runs_skill_version_ml_skill_versions"
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["ml_experiments.id"], name="fk_ml_skill_runs_experiment_id_ml_experiments"
        ),
        sa.ForeignKeyConstraint(["test_id"], ["ml_tests.id"], name="fk_ml_skill_runs_test_id_ml_tests"),
        sa.PrimaryKeyConstraint("id", name="pk_ml_skill_runs"),
    )
    for column in ("skill_name", "skill_version", "status", "experiment_id", "test_id", "started_at"):
        _index("ml_skill_runs", column)

    op.create_table(
        "operations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("result_type", sa.String(200), nullable=True),
        sa.Column("result_bytes", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _time("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_operations"),
    )
    for column in ("kind", "service", "state", "created_at"):
        _index("operations", column)


def downgrade() -> None:
    # Children before parents, so foreign keys never dangle.
    for table in (
        "operations",
        "ml_skill_runs",
        "ml_tests",
        "ml_experiments",
        "ml_skill_versions",
        "ml_skills",
        "lineage_edges",
        "lineage_events",
        "ml_compiled_artifacts",
        "artifact_aliases",
        "artifacts",
    ):
        op.drop_table(table)
