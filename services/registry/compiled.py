"""CompiledCatalog: the records of ml_compiled_artifacts, each tied to the artifact it was compiled from.

Every record carries its producer's signature bundle over exactly its files; one without is refused (the
compiler, the only producer, always signs). The registry stores the bundle; serving verifies it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import pagination
from services.core.artifacts.manifest import ManifestFile, compiled_content_id
from services.core.canonical import CONTENT_ID, find_non_finite
from services.core.db.schema import artifacts, as_utc, ml_compiled_artifacts
from services.core.errors import InvalidArgument, NotFound
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, compiled_entity
from services.registry.records import CompiledRecord, Page, SignatureData

class CompiledCatalog:
    def __init__(self, engine: AsyncEngine, bus: LineageBus) -> None:
        self._engine = engine
        self._bus = bus

    async def register(self, data: dict[str, Any], *, signature: SignatureData | None, actor: str) -> CompiledRecord:
        """Registers a compiler's output (idempotent on its content id; a record stored without a signature,
        from before signing, takes the first one it is registered again with)."""
        source = data.get("source_artifact_id", "")
        if not CONTENT_ID.match(source):
            raise InvalidArgument("must be an artifact id 'sha256:<hex>'", field="compiled.source_artifact_id")
        compiler = _required(data, "compiler")
        target = data.get("target") or compiler
        files = _files(data.get("files") or [])
        sha256 = data.get("sha256") or files[0]["sha256"]
        if sha256 not in {f["sha256"] for f in files}:
            raise InvalidArgument("must be the sha256 of one of the files (the primary one)", field="compiled.sha256")
        kwargs = dict(data.get("kwargs") or {})
        _check_finite(kwargs, "compiled.kwargs")
        validation = dict(data.get("validation") or {})
        _check_finite(validation, "compiled.validation")
        record_id = compiled_content_id(source, compiler, target, files, kwargs)
        if data.get("id") and data["id"] != record_id:
            raise InvalidArgument(f"does not match the content id {record_id}", field="compiled.id")
        if signature is None or not signature.bundle:
            raise InvalidArgument("is required: the compiler's signature bundle over the compiled files",
                                  field="compiled.signature")
        async with self._engine.begin() as conn:
            if (await conn.execute(sa.select(artifacts.c.id).where(artifacts.c.id == source))).first() is None:
                raise NotFound(f"no artifact {source}", field="compiled.source_artifact_id")
            table = ml_compiled_artifacts
            exists = (await conn.execute(sa.select(table.c.id).where(table.c.id == record_id))).first()
            signed = {"signature_media_type": signature.media_type, "signature_bundle": signature.bundle,
                      "signature_key_id": signature.key_id}
            if exists is not None:
                await conn.execute(table.update().where(table.c.id == record_id, table.c.signature_bundle.is_(None))
                                   .values(**signed))
            else:
                try:
                    await conn.execute(
                        ml_compiled_artifacts.insert().values(
                            id=record_id, source_artifact_id=source, compiler=compiler, target=target,
                            sha256=sha256, size=sum(f["size"] for f in files), files=files, kwargs=kwargs,
                            tool_versions=dict(data.get("tool_versions") or {}), validation=validation,
                            triton_platform=data.get("triton_platform", ""), **signed, created_by=actor,
                            created_at=datetime.now(UTC),
                        )
                    )
                except DBIntegrityError:
                    exists = True  # a concurrent registration of the same content won
        if exists is None:
            await self._bus.emit(
                LineageEvent(
                    operation="register_compiled", actor=actor, inputs=[artifact_entity(source)],
                    outputs=[compiled_entity(record_id)],
                    parameters={"compiler": compiler, "target": target, "kwargs": kwargs}, service="registry",
                )
            )
        return await self.get(record_id)

    async def get(self, compiled: str, *, field: str = "id") -> CompiledRecord:
        compiled = compiled.removeprefix("compiled:")
        if not CONTENT_ID.match(compiled):
            raise InvalidArgument("must be 'sha256:<hex>'", field=field)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(ml_compiled_artifacts).where(ml_compiled_artifacts.c.id == compiled))
            ).first()
        if row is None:
            raise NotFound(f"no compiled artifact {compiled}", field=field)
        return _record(row)

    async def list(
        self, *, source_artifact_id: str = "", compiler: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page:
        size = pagination.page_size(page_size)
        offset = pagination.decode_token(page_token)
        table = ml_compiled_artifacts
        query = sa.select(table).order_by(table.c.created_at.desc(), table.c.id)
        if source_artifact_id:
            query = query.where(table.c.source_artifact_id == source_artifact_id)
        if compiler:
            query = query.where(table.c.compiler == compiler)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
        return Page([_record(r) for r in rows[:size]], pagination.next_token(offset, size, len(rows)))


def _required(data: dict[str, Any], key: str) -> str:
    value = data.get(key) or ""
    if not value or len(value) > 64:
        raise InvalidArgument("is required (at most 64 characters)", field=f"compiled.{key}")
    return value


def _files(raw: list[dict]) -> list[dict]:
    if not raw:
        raise InvalidArgument("a compiled artifact has at least one file", field="compiled.files")
    files = []
    for index, item in enumerate(raw):
        try:
            files.append(ManifestFile.model_validate(item).model_dump(mode="json"))
        except ValidationError as exc:
            loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise InvalidArgument(exc.errors()[0]["msg"], field=f"compiled.files[{index}].{loc}") from None
    paths = [f["path"] for f in files]
    if len(set(paths)) != len(paths):
        raise InvalidArgument("file paths must be unique", field="compiled.files")
    return sorted(files, key=lambda f: f["path"])


def _check_finite(value: dict[str, Any], field: str) -> None:
    bad = find_non_finite(value, field)
    if bad:
        raise InvalidArgument("must be a finite number", field=bad)


def _record(row: Any) -> CompiledRecord:
    return CompiledRecord(
        id=row.id, source_artifact_id=row.source_artifact_id, compiler=row.compiler, target=row.target,
        files=tuple(ManifestFile.model_validate(f) for f in row.files), sha256=row.sha256, size=row.size,
        kwargs=dict(row.kwargs or {}), tool_versions=dict(row.tool_versions or {}),
        validation=dict(row.validation or {}), triton_platform=row.triton_platform or "",
        signature=(SignatureData(row.signature_media_type or "", bytes(row.signature_bundle), row.signature_key_id or "")
                   if row.signature_bundle is not None else None),
        created_by=row.created_by or "", created_at=as_utc(row.created_at),
    )
