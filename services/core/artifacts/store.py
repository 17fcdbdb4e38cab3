"""`StoreHandler`: the object store as a lifecycle handler (policy first, a "store" lineage event after).

Every put also writes a metadata sidecar object `meta/<hex>.json` (who stored it, when, and the
caller's lineage: artifact id, file path, source). The sidecar is write-once like the blob: the first
writer's provenance is kept, and every later put of the same bytes still emits its own lineage event,
which is where the full history lives (the registry stores it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.core.artifacts.handlers import LifecycleOperation, MLOpsHandler, object_entity
from services.core.artifacts.objectstore import ObjectStore, StoredObject, content_key
from services.core.auth.policy import REGISTRY_READ, REGISTRY_WRITE
from services.core.canonical import canonical_json
from services.core.errors import InvalidArgument
from services.core.lineage import LineageBus, artifact_entity, source_entity


def meta_key(sha256_hex: str) -> str:
    content_key(sha256_hex)  # validates the digest
    return f"meta/{sha256_hex}.json"


class StoreHandler(MLOpsHandler):
    """Puts and fetches blobs; `write_scope` / `read_scope` are what the service's callers hold."""

    def __init__(
        self,
        store: ObjectStore,
        bus: LineageBus,
        *,
        write_scope: str = REGISTRY_WRITE,
        read_scope: str = REGISTRY_READ,
        service: str = "",
    ) -> None:
        super().__init__(bus, service=service)
        self.store = store
        self.write_scope = write_scope
        self.read_scope = read_scope

    async def put_file(
        self, path: Path, *, lineage: Mapping[str, Any] | None = None, expected_sha256: str | None = None
    ) -> StoredObject:
        lineage = _checked_lineage(lineage)
        async with self.lifecycle("store", self.write_scope) as op:
            stored = await self.store.put_file(Path(path), expected_sha256=expected_sha256)
            await self._finish(op, stored, lineage)
        return stored

    async def put_bytes(self, data: bytes, *, lineage: Mapping[str, Any] | None = None) -> StoredObject:
        lineage = _checked_lineage(lineage)
        async with self.lifecycle("store", self.write_scope) as op:
            stored = await self.store.put_bytes(data)
            await self._finish(op, stored, lineage)
        return stored

    async def fetch(
        self,
        sha256_hex: str,
        dest_path: Path,
        *,
        expected_size: int | None = None,
        label: str | None = None,
        tmp_dir: Path | None = None,
    ) -> StoredObject:
        """Stream a blob to `dest_path`, verified; the load that follows is what emits lineage."""
        self.authorize(self.read_scope)
        return await self.store.fetch(
            sha256_hex, Path(dest_path), expected_size=expected_size, label=label, tmp_dir=tmp_dir
        )

    async def exists(self, sha256_hex: str) -> bool:
        self.authorize(self.read_scope)
        return await self.store.exists(sha256_hex)

    async def lineage_metadata(self, sha256_hex: str) -> dict[str, Any]:
        """The sidecar of a stored blob (NotFound when there is none)."""
        self.authorize(self.read_scope)
        return json.loads(await self.store.get_bytes(meta_key(sha256_hex)))

    async def _finish(self, op: LifecycleOperation, stored: StoredObject, lineage: dict[str, Any]) -> None:
        sidecar = {
            "sha256": stored.sha256,
            "size": stored.size,
            "stored_by": op.actor,
            "stored_at": datetime.now(UTC).isoformat(),
            "lineage": lineage,
        }
        await self.store.put_once(meta_key(stored.sha256), canonical_json(sidecar).encode())
        op.record(
            inputs=_lineage_inputs(lineage),
            outputs=[object_entity(stored.sha256)],
            parameters={"key": stored.key, "size": stored.size, "store": self.store.url, "lineage": lineage},
        )


def _checked_lineage(lineage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Lineage must be plain JSON (it is written as canonical JSON and travels in the event)."""
    value = dict(lineage or {})
    try:
        canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"must be JSON-serialisable: {exc}", field="lineage") from None
    return value


def _lineage_inputs(lineage: Mapping[str, Any]) -> list[str]:
    inputs = []
    if isinstance(lineage.get("artifact_id"), str):
        inputs.append(artifact_entity(lineage["artifact_id"]))
    if isinstance(lineage.get("source"), str) and lineage["source"]:
        inputs.append(source_entity(lineage["source"]))
    return inputs
