"""The mesh's tables (SQLAlchemy Core). migrations/versions must create exactly this; a test compares them.

Times are stored as UTC. SQLite drops the zone and gives back naive datetimes, so read times through
`as_utc`. JSON columns that may be absent use `none_as_null` so Python None is SQL NULL, not JSON `null`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

# Deterministic constraint names, so migrations can name them and autogenerate comparisons line up.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

OPERATION_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime from what either backend returns (SQLite: naive, meant as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(name: str, *, nullable: bool = False, index: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, index=index)


def _json(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.JSON(none_as_null=True), nullable=nullable)


def _actor(name: str = "created_by") -> sa.Column:
    return sa.Column(name, sa.String(200), nullable=False)


artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.String(71), primary_key=True),  # "sha256:<hex>" of manifest_json
    sa.Column("name", sa.String(200), nullable=True, index=True),
    sa.Column("manifest_json", sa.Text, nullable=False),  # the canonical JSON exactly as hashed
    sa.Column("framework", sa.String(64), nullable=False),
    sa.Column("format", sa.String(64), nullable=False),
    sa.Column("total_size", sa.BigInteger, nullable=False),
    _json("labels"),
    sa.Column("source_uri", sa.Text, nullable=False),
    sa.Column("signature_media_type", sa.String(200), nullable=False),
    sa.Column("signature_bundle", sa.LargeBinary, nullable=True),
    sa.Column("signature_key_id", sa.String(200), nullable=False),
    _actor(),
    _time("created_at", index=True),
)

artifact_aliases = sa.Table(
    "artifact_aliases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(100), primary_key=True),
    sa.Column("artifact_id", sa.String(71), sa.ForeignKey("artifacts.id"), nullable=False),
    _actor("updated_by"),
    _time("updated_at"),
)

ml_compiled_artifacts = sa.Table(
    "ml_compiled_artifacts",
    metadata,
    sa.Column("id", sa.String(71), primary_key=True),
    sa.Column("source_artifact_id", sa.String(71), sa.ForeignKey("artifacts.id"), nullable=False, index=True),
    sa.Column("compiler", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    _json("files"),
    _json("kwargs"),
    _json("tool_versions"),
    _json("validation"),
    sa.Column("triton_platform", sa.String(64), nullable=False),
    # The compiler's signature bundle over exactly `files` (migration 0002; NULL on older records).
    sa.Column("signature_media_type", sa.String(200), nullable=False, server_default=""),
    sa.Column("signature_bundle", sa.LargeBinary, nullable=True),
    sa.Column("signature_key_id", sa.String(200), nullable=False, server_default=""),
    _actor(),
    _time("created_at"),
)

lineage_events = sa.Table(
    "lineage_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("operation", sa.String(64), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("operation_id", sa.String(64), nullable=True),
    _json("parameters"),
    _time("time", index=True),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), sa.ForeignKey("lineage_events.id"), nullable=False, index=True),
    sa.Column("entity", sa.String(400), nullable=False),
    sa.Column("role", sa.String(8), nullable=False),  # "input" | "output"
    # Leads with entity, so it also serves lookups by entity alone.
    sa.Index(None, "entity", "role"),
)

ml_skills = sa.Table(
    "ml_skills",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("latest_version", sa.String(64), nullable=False),
    sa.Column("version_count", sa.Integer, nullable=False),
    _time("created_at"),
    _time("updated_at"),
)

ml_skill_versions = sa.Table(
    "ml_skill_versions",
    metadata,
    sa.Column("version", sa.String(64), primary_key=True),  # hex sha256 of spec_json
    sa.Column("name", sa.String(200), sa.ForeignKey("ml_skills.name"), nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),  # canonical JSON, exactly as hashed
    sa.Column("spec_yaml", sa.Text, nullable=False),
    _json("lock"),  # every model reference resolved to sha256:<hex> at publish time
    _actor(),
    _time("created_at"),
    sa.UniqueConstraint("name", "number"),
)

ml_experiments = sa.Table(
    "ml_experiments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    _json("labels"),
    _time("created_at"),
)

ml_tests = sa.Table(
    "ml_tests",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("experiment_id", sa.String(36), sa.ForeignKey("ml_experiments.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    _time("created_at"),
    sa.UniqueConstraint("experiment_id", "name"),
)

ml_skill_runs = sa.Table(
    "ml_skill_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("skill_name", sa.String(200), nullable=False, index=True),
    sa.Column(
        "skill_version", sa.String(64), sa.ForeignKey("ml_skill_versions.version"), nullable=False, index=True
    ),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    _json("inputs"),
    # Absent while a run is in flight, or when it failed before producing them.
    _json("outputs", nullable=True),
    _json("steps", nullable=True),
    _json("resolved", nullable=True),
    sa.Column("reresolved_aliases", sa.Boolean, nullable=False),
    sa.Column("experiment_id", sa.String(36), sa.ForeignKey("ml_experiments.id"), nullable=True, index=True),
    sa.Column("test_id", sa.String(36), sa.ForeignKey("ml_tests.id"), nullable=True, index=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("failed_step", sa.String(100), nullable=True),
    _actor(),
    _time("started_at", index=True),
    _time("finished_at", nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=True),
)

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False, index=True),
    sa.Column("service", sa.String(32), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # one of OPERATION_STATES
    _json("progress"),  # {done, total, unit, stage, message}
    _json("request"),  # the request as JSON, secrets removed
    sa.Column("result_type", sa.String(200), nullable=True),  # protobuf full name of result_bytes
    sa.Column("result_bytes", sa.LargeBinary, nullable=True),
    _json("error", nullable=True),  # {code, message, field}
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    _actor(),
    _time("created_at", index=True),
    _time("updated_at"),
    _time("finished_at", nullable=True),
)
