"""SkillCatalog: publishes hash-locked skill versions and answers them by name, version or number."""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.core import pagination
from services.core.db.schema import as_utc, ml_skill_versions, ml_skills
from services.core.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, skill_entity
from services.registry.artifacts import ArtifactCatalog
from services.registry.records import Page, SkillRecord, SkillVersionRecord
from services.registry.skills.canonical import canonical_json, version_id
from services.registry.skills.references import model_references
from services.registry.skills.spec import parse_skill_spec

HEX_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")
SKILL_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")


class _NumberTaken(Exception):
    """A concurrent publish of the same skill took the version number we meant to use."""


class SkillCatalog:
    def __init__(self, engine: AsyncEngine, artifacts: ArtifactCatalog, bus: LineageBus) -> None:
        self._engine = engine
        self._artifacts = artifacts
        self._bus = bus
        # Publishes of one skill are serialised in this process; the optimistic version_count check
        # below still protects replicas that share the database.
        self._publish_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def publish(
        self, spec_yaml: str, *, actor: str, expected_version: str = ""
    ) -> tuple[SkillVersionRecord, bool]:
        """Publishes a spec; the same content gives the same version, returned unchanged (created=False)."""
        spec = parse_skill_spec(spec_yaml)
        canonical = canonical_json(spec)
        version = version_id(spec)
        if expected_version and expected_version != version:
            raise FailedPrecondition(
                f"the spec hashes to version {version}, not {expected_version}", field="expected_version"
            )
        existing = await self._version_row(version)
        if existing is not None:
            return _same_or_refuse(existing, canonical), False
        # Lock every model reference to the artifact it names now; one that resolves to nothing refuses.
        lock = {ref: await self._artifacts.resolve(ref, field=f"model {ref!r}") for ref in model_references(spec)}
        name_lock = self._publish_locks.setdefault(spec.name, asyncio.Lock())
        async with name_lock:
            created = await self._insert_version(spec, spec_yaml, canonical, version, lock, actor)
        if not created:
            return _same_or_refuse(await self._version_row(version), canonical), False
        await self._bus.emit(
            LineageEvent(
                operation="publish_skill",
                actor=actor,
                inputs=[artifact_entity(h) for h in dict.fromkeys(lock.values())],
                outputs=[skill_entity(spec.name, version)],
                parameters={"lock": lock},
                service="registry",
            )
        )
        return await self.get(f"{spec.name}@{version}"), True

    async def _insert_version(self, spec, spec_yaml: str, canonical: str, version: str, lock: dict, actor: str) -> bool:
        """True when this call wrote the version; False when a concurrent publish of the same spec did."""
        for attempt in range(8):
            try:
                async with self._engine.begin() as conn:
                    number = await self._take_number(conn, spec.name, spec.description or "", version)
                    await conn.execute(
                        ml_skill_versions.insert().values(
                            version=version, name=spec.name, number=number, spec_json=canonical,
                            spec_yaml=spec_yaml, lock=lock, created_by=actor, created_at=datetime.now(UTC),
                        )
                    )
                return True
            except (DBIntegrityError, _NumberTaken):
                if await self._version_row(version) is not None:
                    return False
                await asyncio.sleep(0.01 * 2**attempt)  # another replica is publishing this skill
        raise Aborted("concurrent publishes of this skill kept colliding; retry")

    async def _take_number(self, conn: AsyncConnection, name: str, description: str, version: str) -> int:
        now = datetime.now(UTC)
        row = (await conn.execute(sa.select(ml_skills).where(ml_skills.c.name == name))).first()
        if row is None:
            await conn.execute(
                ml_skills.insert().values(
                    name=name, description=description, latest_version=version, version_count=1,
                    created_at=now, updated_at=now,
                )
            )
            return 1
        # Optimistic: the count we read must still be there, or a concurrent publish won and we retry.
        result = await conn.execute(
            ml_skills.update()
            .where(ml_skills.c.name == name, ml_skills.c.version_count == row.version_count)
            .values(
                description=description, latest_version=version,
                version_count=row.version_count + 1, updated_at=now,
            )
        )
        if result.rowcount != 1:
            raise _NumberTaken()
        return row.version_count + 1

    async def _version_row(self, version: str) -> Any:
        async with self._engine.connect() as conn:
            query = sa.select(ml_skill_versions).where(ml_skill_versions.c.version == version)
            return (await conn.execute(query)).first()

    async def get(self, ref: str) -> SkillVersionRecord:
        """`name`, `name@latest`, `name@<number>`, `name@<version>` or a unique 8+ hex prefix of it."""
        name, _, selector = ref.strip().partition("@")
        if not SKILL_NAME.match(name):
            raise InvalidArgument("must be 'name' or 'name@version'", field="ref")
        table = ml_skill_versions
        query = sa.select(table).where(table.c.name == name)
        if not selector or selector == "latest":
            query = query.order_by(table.c.number.desc()).limit(1)
        elif selector.isdigit() and len(selector) < 8:
            query = query.where(table.c.number == int(selector))
        elif HEX_PREFIX.match(selector):
            query = query.where(table.c.version.startswith(selector, autoescape=True)).limit(2)
        else:
            raise InvalidArgument("the version is 'latest', a number, or 8-64 hex digits", field="ref")
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            raise NotFound(f"no skill {ref}" if selector else f"no skill named {name}", field="ref")
        if len(rows) > 1:
            raise InvalidArgument(f"version prefix {selector!r} is ambiguous; give more digits", field="ref")
        return _version(rows[0])

    async def list(self, *, page_size: int = 0, page_token: str = "") -> Page:
        size = pagination.page_size(page_size)
        offset = pagination.decode_token(page_token)
        query = sa.select(ml_skills).order_by(ml_skills.c.name).offset(offset).limit(size + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [
            SkillRecord(r.name, r.description or "", r.latest_version, r.version_count, as_utc(r.updated_at))
            for r in rows[:size]
        ]
        return Page(items, pagination.next_token(offset, size, len(rows)))

    async def versions(self, name: str, *, page_size: int = 0, page_token: str = "") -> Page:
        if not SKILL_NAME.match(name):
            raise InvalidArgument("is not a skill name", field="name")
        size = pagination.page_size(page_size)
        offset = pagination.decode_token(page_token)
        table = ml_skill_versions
        query = sa.select(table).where(table.c.name == name).order_by(table.c.number.desc())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
        if not rows and offset == 0:
            raise NotFound(f"no skill named {name}", field="name")
        return Page([_version(r) for r in rows[:size]], pagination.next_token(offset, size, len(rows)))


def _same_or_refuse(row: Any, canonical: str) -> SkillVersionRecord:
    """A published version never changes: content that differs under its id is refused, never written."""
    if row.spec_json != canonical:
        raise AlreadyExists(f"version {row.version} is already published with different content", field="spec_yaml")
    return _version(row)


def _version(row: Any) -> SkillVersionRecord:
    return SkillVersionRecord(
        name=row.name,
        version=row.version,
        number=row.number,
        spec=json.loads(row.spec_json),
        spec_yaml=row.spec_yaml,
        lock=dict(row.lock or {}),
        created_by=row.created_by or "",
        created_at=as_utc(row.created_at),
    )
