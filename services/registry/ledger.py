"""RunLedger: experiments, their tests, and the skill runs recorded against them (ml_skill_runs)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import pagination
from services.core.canonical import find_non_finite
from services.core.db.outage import retried
from services.core.db.schema import as_utc, ml_experiments, ml_skill_runs, ml_skill_versions, ml_tests
from services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.registry.records import ExperimentRecord, MLTestRecord, Page, SkillRunRecord

RUN_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL = frozenset(RUN_STATES[1:])


def _name(value: str, field: str) -> str:
    if not value.strip() or len(value) > 200:
        raise InvalidArgument("is required (1-200 characters)", field=field)
    return value.strip()


def _uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("is not an id this registry issued", field=field) from None


class RunLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # ---- experiments and tests ----

    async def create_experiment(
        self, name: str, *, description: str = "", labels: dict[str, str] | None = None
    ) -> ExperimentRecord:
        values = {
            "id": str(uuid.uuid4()), "name": _name(name, "name"), "description": description,
            "labels": dict(labels or {}), "created_at": datetime.now(UTC),
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(ml_experiments.insert().values(**values))
        except DBIntegrityError:
            raise AlreadyExists(f"an experiment named {values['name']!r} exists", field="name") from None
        return ExperimentRecord(values["id"], values["name"], description, values["labels"], values["created_at"])

    async def list_experiments(self, *, page_size: int = 0, page_token: str = "") -> Page:
        size, offset = pagination.page_size(page_size), pagination.decode_token(page_token)
        query = sa.select(ml_experiments).order_by(ml_experiments.c.created_at.desc(), ml_experiments.c.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
        items = [
            ExperimentRecord(r.id, r.name, r.description or "", dict(r.labels or {}), as_utc(r.created_at))
            for r in rows[:size]
        ]
        return Page(items, pagination.next_token(offset, size, len(rows)))

    async def create_test(self, experiment_id: str, name: str, *, description: str = "") -> MLTestRecord:
        experiment_id = _uuid(experiment_id, "experiment_id")
        values = {
            "id": str(uuid.uuid4()), "experiment_id": experiment_id, "name": _name(name, "name"),
            "description": description, "created_at": datetime.now(UTC),
        }
        async with self._engine.begin() as conn:
            found = await conn.execute(sa.select(ml_experiments.c.id).where(ml_experiments.c.id == experiment_id))
            if found.first() is None:
                raise NotFound(f"no experiment {experiment_id}", field="experiment_id")
            try:
                await conn.execute(ml_tests.insert().values(**values))
            except DBIntegrityError:
                raise AlreadyExists(f"experiment already has a test named {values['name']!r}", field="name") from None
        return MLTestRecord(**values)

    async def list_tests(self, experiment_id: str, *, page_size: int = 0, page_token: str = "") -> Page:
        size, offset = pagination.page_size(page_size), pagination.decode_token(page_token)
        query = sa.select(ml_tests).order_by(ml_tests.c.created_at.desc(), ml_tests.c.id)
        if experiment_id:
            query = query.where(ml_tests.c.experiment_id == _uuid(experiment_id, "experiment_id"))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
        items = [
            MLTestRecord(r.id, r.experiment_id, r.name, r.description or "", as_utc(r.created_at))
            for r in rows[:size]
        ]
        return Page(items, pagination.next_token(offset, size, len(rows)))

    # ---- runs ----

    async def start_run(
        self, *, skill_name: str, skill_version: str, inputs: dict[str, Any], resolved: dict[str, str],
        actor: str, reresolved_aliases: bool = False, experiment_id: str = "", test_id: str = "",
    ) -> SkillRunRecord:
        """Opens a RUNNING ledger entry; the skill runtime finishes it with `finish_run`."""
        bad = find_non_finite(inputs, "inputs")
        if bad:
            raise InvalidArgument("must be a finite number", field=bad)
        experiment_id = _uuid(experiment_id, "experiment_id") if experiment_id else None
        test_id = _uuid(test_id, "test_id") if test_id else None
        values = {
            "id": str(uuid.uuid4()), "skill_name": skill_name, "skill_version": skill_version, "status": "RUNNING",
            "inputs": inputs, "outputs": {}, "steps": [], "resolved": resolved,
            "reresolved_aliases": reresolved_aliases, "experiment_id": experiment_id, "test_id": test_id,
            "error": "", "failed_step": "", "created_by": actor, "started_at": datetime.now(UTC),
            "finished_at": None, "duration_ms": 0.0,
        }
        async with self._engine.begin() as conn:
            await self._check_links(conn, skill_version, experiment_id, test_id)
            await conn.execute(ml_skill_runs.insert().values(**values))
        return SkillRunRecord(**values)

    async def _check_links(self, conn, skill_version: str, experiment_id: str | None, test_id: str | None) -> None:
        version = await conn.execute(
            sa.select(ml_skill_versions.c.version).where(ml_skill_versions.c.version == skill_version)
        )
        if version.first() is None:
            raise NotFound(f"no skill version {skill_version}", field="skill_version")
        if experiment_id:
            found = await conn.execute(sa.select(ml_experiments.c.id).where(ml_experiments.c.id == experiment_id))
            if found.first() is None:
                raise NotFound(f"no experiment {experiment_id}", field="experiment_id")
        if test_id:
            test = (await conn.execute(sa.select(ml_tests).where(ml_tests.c.id == test_id))).first()
            if test is None:
                raise NotFound(f"no test {test_id}", field="test_id")
            if experiment_id and test.experiment_id != experiment_id:
                raise InvalidArgument(f"test {test_id} belongs to another experiment", field="test_id")

    async def finish_run(
        self, run_id: str, *, status: str, outputs: dict[str, Any], steps: list[dict[str, Any]],
        error: str = "", failed_step: str = "",
    ) -> SkillRunRecord:
        if status not in TERMINAL:
            raise InvalidArgument(f"must be one of {sorted(TERMINAL)}", field="status")
        run = await retried(lambda: self.get_run(run_id))
        if run.status != "RUNNING":
            raise FailedPrecondition(f"run {run_id} already finished ({run.status})", field="id")
        finished = datetime.now(UTC)
        # A run ends once: the update only touches a RUNNING row, so it is safe to repeat while the database
        # is unreachable (a try whose commit landed unanswered makes the next one a no-op) and a run's end is
        # not lost to a dropped connection; two finishers racing cannot both write either.
        update = ml_skill_runs.update().where(ml_skill_runs.c.id == run.id, ml_skill_runs.c.status == "RUNNING")
        update = update.values(
            status=status, outputs=outputs, steps=steps, error=error, failed_step=failed_step,
            finished_at=finished, duration_ms=(finished - run.started_at).total_seconds() * 1000,
        )

        async def write() -> int:
            async with self._engine.begin() as conn:
                return (await conn.execute(update)).rowcount

        updated = await retried(write)
        record = await retried(lambda: self.get_run(run.id))
        if not updated and record.finished_at != finished:  # not our write that landed: another finisher's
            raise FailedPrecondition(f"run {run_id} already finished ({record.status})", field="id")
        return record

    async def get_run(self, run_id: str) -> SkillRunRecord:
        run_id = _uuid(run_id, "id")
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(ml_skill_runs).where(ml_skill_runs.c.id == run_id))).first()
        if row is None:
            raise NotFound(f"no skill run {run_id}", field="id")
        return _run(row)

    async def list_runs(
        self, *, skill_name: str = "", skill_version: str = "", experiment_id: str = "", test_id: str = "",
        status: str = "", page_size: int = 0, page_token: str = "",
    ) -> Page:
        size, offset = pagination.page_size(page_size), pagination.decode_token(page_token)
        table = ml_skill_runs
        query = sa.select(table).order_by(table.c.started_at.desc(), table.c.id)
        if skill_name:
            query = query.where(table.c.skill_name == skill_name)
        if skill_version:
            query = query.where(table.c.skill_version.startswith(skill_version, autoescape=True))
        if experiment_id:
            query = query.where(table.c.experiment_id == _uuid(experiment_id, "experiment_id"))
        if test_id:
            query = query.where(table.c.test_id == _uuid(test_id, "test_id"))
        if status:
            if status not in RUN_STATES:
                raise InvalidArgument(f"must be one of {list(RUN_STATES)}", field="status")
            query = query.where(table.c.status == status)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
        return Page([_run(r) for r in rows[:size]], pagination.next_token(offset, size, len(rows)))


def _run(row: Any) -> SkillRunRecord:
    return SkillRunRecord(
        id=row.id, skill_name=row.skill_name, skill_version=row.skill_version, status=row.status,
        inputs=dict(row.inputs or {}), outputs=dict(row.outputs or {}), steps=list(row.steps or []),
        resolved=dict(row.resolved or {}), reresolved_aliases=bool(row.reresolved_aliases),
        experiment_id=row.experiment_id, test_id=row.test_id, error=row.error or "",
        failed_step=row.failed_step or "", created_by=row.created_by or "", started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None, duration_ms=row.duration_ms or 0.0,
    )
