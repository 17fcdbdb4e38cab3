"""ArtifactCatalog: registers manifests under their content id, keeps name@alias pointers, resolves refs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.core import pagination
from services.core.artifacts.manifest import Manifest, parse_manifest
from services.core.db.schema import artifact_aliases, artifacts, as_utc
from services.core.errors import Aborted, IntegrityError, InvalidArgument, NotFound
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, source_entity
from services.registry.records import ArtifactRecord, Page, SignatureData
from services.registry.refs import LATEST, check_alias, check_name, parse_artifact_ref

MAX_LABELS = 64


class ArtifactCatalog:
    def __init__(self, engine: AsyncEngine, bus: LineageBus) -> None:
        self._engine = engine
        self._bus = bus

    async def register(
        self,
        manifest: dict[str, Any] | Manifest,
        *,
        actor: str,
        name: str = "",
        aliases: list[str] | tuple[str, ...] = (),
        labels: dict[str, str] | None = None,
        source_uri: str = "",
        signature: SignatureData | None = None,
    ) -> ArtifactRecord:
        """Registers (idempotently) and moves `name@latest` plus `aliases` to it."""
        manifest = manifest if isinstance(manifest, Manifest) else parse_manifest(manifest)
        labels = _check_labels(labels or {})
        if name:
            check_name(name)
        elif aliases:
            raise InvalidArgument("aliases need a name", field="name")
        alias_set = [LATEST, *(check_alias(a, field=f"aliases[{i}]") for i, a in enumerate(aliases))] if name else []
        artifact_id = manifest.artifact_id
        for attempt in range(3):
            try:
                async with self._engine.begin() as conn:
                    created = await self._insert_if_new(
                        conn, manifest, artifact_id, name, labels, source_uri, signature, actor
                    )
                    for alias in dict.fromkeys(alias_set):
                        await _point_alias(conn, name, alias, artifact_id, actor)
                break
            except DBIntegrityError:
                if attempt == 2:
                    raise Aborted("a concurrent registration of the same name won; retry") from None
        record = await self.get(artifact_id)
        if created:
            inputs = [source_entity(source_uri)] if source_uri else []
            await self._bus.emit(
                LineageEvent(
                    operation="register",
                    actor=actor,
                    inputs=inputs,
                    outputs=[artifact_entity(artifact_id)],
                    parameters={"name": name, "aliases": list(alias_set), "files": len(manifest.files)},
                    service="registry",
                )
            )
        return record

    async def _insert_if_new(self, conn, manifest, artifact_id, name, labels, source_uri, signature, actor) -> bool:
        existing = (
            await conn.execute(sa.select(artifacts.c.manifest_json).where(artifacts.c.id == artifact_id))
        ).scalar_one_or_none()
        if existing is not None:
            if existing != manifest.canonical_json():
                raise IntegrityError(f"stored manifest of {artifact_id} does not hash to its id", field="manifest")
            return False
        await conn.execute(
            artifacts.insert().values(
                id=artifact_id,
                name=name or None,
                manifest_json=manifest.canonical_json(),
                framework=manifest.framework,
                format=manifest.format,
                total_size=manifest.total_size,
                labels=labels,
                source_uri=source_uri,
                signature_media_type=signature.media_type if signature else "",
                signature_bundle=signature.bundle if signature else None,
                signature_key_id=signature.key_id if signature else "",
                created_by=actor,
                created_at=datetime.now(UTC),
            )
        )
        return True

    async def set_alias(self, name: str, alias: str, artifact_id: str, *, actor: str) -> ArtifactRecord:
        check_name(name)
        check_alias(alias)
        ref = parse_artifact_ref(artifact_id, field="artifact_id")
        if ref.artifact_id is None:
            raise InvalidArgument("must be a pinned 'sha256:<hex>' id", field="artifact_id")
        async with self._engine.begin() as conn:
            if not await _exists(conn, artifact_id):
                raise NotFound(f"no artifact {artifact_id}", field="artifact_id")
            await _point_alias(conn, name, alias, artifact_id, actor)
        await self._bus.emit(
            LineageEvent(
                operation="set_alias",
                actor=actor,
                inputs=[artifact_entity(artifact_id)],
                outputs=[f"alias:{name}@{alias}"],
                service="registry",
            )
        )
        return await self.get(artifact_id)

    async def resolve(self, ref: str, *, field: str = "ref") -> str:
        """The `sha256:<hex>` id that `ref` names now; NotFound when it names nothing."""
        parsed = parse_artifact_ref(ref, field=field)
        async with self._engine.connect() as conn:
            if parsed.artifact_id:
                if not await _exists(conn, parsed.artifact_id):
                    raise NotFound(f"no artifact {parsed.artifact_id}", field=field)
                return parsed.artifact_id
            found = (
                await conn.execute(
                    sa.select(artifact_aliases.c.artifact_id).where(
                        artifact_aliases.c.name == parsed.name, artifact_aliases.c.alias == parsed.alias
                    )
                )
            ).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no artifact named {parsed.name}@{parsed.alias}", field=field)
        return found

    async def get(self, ref: str, *, field: str = "ref") -> ArtifactRecord:
        artifact_id = await self.resolve(ref, field=field)
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(artifacts).where(artifacts.c.id == artifact_id))).one()
            names = await _aliases_of(conn, [artifact_id])
        return _record(row, names.get(artifact_id, ()))

    async def list(
        self, *, name: str = "", framework: str = "", labels: dict[str, str] | None = None,
        page_size: int = 0, page_token: str = "",
    ) -> Page:
        size = pagination.page_size(page_size)
        offset = pagination.decode_token(page_token)
        query = sa.select(artifacts).order_by(artifacts.c.created_at.desc(), artifacts.c.id)
        if name:
            named = sa.select(artifact_aliases.c.artifact_id).where(artifact_aliases.c.name == name)
            query = query.where(sa.or_(artifacts.c.name == name, artifacts.c.id.in_(named)))
        if framework:
            query = query.where(artifacts.c.framework == framework)
        async with self._engine.connect() as conn:
            if labels:
                # Labels are JSON; matching them in Python keeps one query for both databases.
                rows = [r for r in (await conn.execute(query)).all() if _labels_match(r.labels, labels)]
                rows = rows[offset : offset + size + 1]
            else:
                rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
            names = await _aliases_of(conn, [r.id for r in rows[:size]])
        items = [_record(r, names.get(r.id, ())) for r in rows[:size]]
        return Page(items, pagination.next_token(offset, size, len(rows)))


async def _exists(conn: AsyncConnection, artifact_id: str) -> bool:
    query = sa.select(artifacts.c.id).where(artifacts.c.id == artifact_id)
    return (await conn.execute(query)).scalar_one_or_none() is not None


async def _point_alias(conn: AsyncConnection, name: str, alias: str, artifact_id: str, actor: str) -> None:
    values = {"artifact_id": artifact_id, "updated_by": actor, "updated_at": datetime.now(UTC)}
    where = (artifact_aliases.c.name == name, artifact_aliases.c.alias == alias)
    result = await conn.execute(artifact_aliases.update().where(*where).values(**values))
    if result.rowcount == 0:
        await conn.execute(artifact_aliases.insert().values(name=name, alias=alias, **values))


async def _aliases_of(conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[str, ...]]:
    if not ids:
        return {}
    query = (
        sa.select(artifact_aliases.c.artifact_id, artifact_aliases.c.name, artifact_aliases.c.alias)
        .where(artifact_aliases.c.artifact_id.in_(ids))
        .order_by(artifact_aliases.c.name, artifact_aliases.c.alias)
    )
    found: dict[str, list[str]] = {}
    for row in await conn.execute(query):
        found.setdefault(row.artifact_id, []).append(f"{row.name}@{row.alias}")
    return {key: tuple(value) for key, value in found.items()}


def _record(row: Any, aliases: tuple[str, ...]) -> ArtifactRecord:
    manifest = Manifest.model_validate(json.loads(row.manifest_json))
    if manifest.artifact_id != row.id:
        raise IntegrityError(f"stored manifest of {row.id} does not hash to its id")
    signature = (
        SignatureData(row.signature_media_type, bytes(row.signature_bundle), row.signature_key_id or "")
        if row.signature_bundle is not None
        else None
    )
    return ArtifactRecord(
        id=row.id,
        manifest=manifest,
        name=row.name,
        aliases=aliases,
        labels=dict(row.labels or {}),
        source_uri=row.source_uri or "",
        signature=signature,
        created_by=row.created_by or "",
        created_at=as_utc(row.created_at),
    )


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} labels", field="labels")
    for key, value in labels.items():
        if not key or len(key) > 100 or len(value) > 500:
            raise InvalidArgument("keys are 1-100 characters, values at most 500", field=f"labels.{key}")
    return dict(labels)


def _labels_match(stored: dict | None, wanted: dict[str, str]) -> bool:
    stored = stored or {}
    return all(stored.get(key) == value for key, value in wanted.items())
