"""A model reference -> what a backend is built from, fetched and verified through the artifact toolkit.

- artifact: the registry's record -> its manifest must hash to its id -> the CacheHandler loads it
  (the LoadHandler checks hashes, sidecars and the signature before anything is deserialised; an
  unsigned or tampered artifact is refused with IntegrityError naming the check);
- compiled: the registry's record must hash to its id (files + what it was made from), its files are
  fetched with their hashes checked, and the source artifact (whose manifest must hash to its id)
  gives the metadata; only ONNX outputs are served (the other runtimes need Triton's own backends);
- builtin: nothing to fetch.
The registry is called with the service's own identity; the toolkit checks the Deploy caller's scope.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from mlmesh.v1 import common_pb2
from services.core.artifacts.cache import CacheHandler
from services.core.artifacts.manifest import ManifestFile, compiled_content_id
from services.core.artifacts.messages import artifact_manifest, files_list
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.store import StoreHandler
from services.core.clients.registry import RegistryClient
from services.core.errors import FailedPrecondition, IntegrityError, InvalidArgument, NotFound
from services.serving.loading.metadata import architecture_type, serving_metadata
from services.serving.loading.refs import ModelRef

SERVABLE_FRAMEWORKS = ("torch", "")


@dataclass(frozen=True)
class ResolvedModel:
    ref: ModelRef
    # What is served, as a typed lineage ref: "sha256:<hex>" (an artifact), "compiled:sha256:<hex>" or
    # "builtin:<name>"; the deploy event's input and every answer's ResponseMeta.artifact_id.
    artifact_id: str
    metadata: dict[str, Any]             # serving_metadata() of the (source) artifact
    state_dict: dict[str, Any] | None = None   # verified torch weights (artifacts)
    onnx_path: Path | None = None              # verified ONNX graph (compiled artifacts)


def _check_compiled_id(record: common_pb2.CompiledArtifact) -> list[ManifestFile]:
    """The record's files, once its content id (files + source + compiler + parameters) checks out."""
    files = [ManifestFile.model_validate(f) for f in files_list(record.files)]
    kwargs = json_format.MessageToDict(record.kwargs)
    identity = compiled_content_id(record.source_artifact_id, record.compiler, record.target,
                                   [f.model_dump(mode="json") for f in files], kwargs)
    if identity != record.id:
        raise IntegrityError(f"compiled artifact {record.id} does not hash to its id", field="model")
    return sorted(files, key=lambda f: f.path)


class ModelResolver:
    def __init__(self, registry: RegistryClient, cache: CacheHandler, store: StoreHandler, compiled_root: Path) -> None:
        self._registry = registry
        self._cache = cache
        self._store = store
        self._compiled_root = Path(compiled_root)

    async def resolve(self, ref: ModelRef) -> ResolvedModel:
        if ref.kind == "builtin":
            return ResolvedModel(ref, ref.value, {})
        if ref.kind == "compiled":
            return await self._compiled(ref)
        artifact = await self._artifact(ref.value)
        manifest = artifact_manifest(artifact, field="model")
        metadata = serving_metadata(manifest.metadata)
        architecture_type(metadata)  # refuse before fetching anything
        if manifest.framework not in SERVABLE_FRAMEWORKS:
            raise FailedPrecondition(f"serving runs torch weights or compiled ONNX; {artifact.id} is "
                                     f"{manifest.framework}/{manifest.format}", field="model")
        loaded = await self._cache.get(manifest, bytes(artifact.signature.bundle))
        return ResolvedModel(ref, artifact.id, metadata, state_dict=loaded.state_dict)

    async def _artifact(self, ref: str) -> common_pb2.Artifact:
        try:
            return await self._registry.get_artifact(ref)
        except (NotFound, InvalidArgument) as exc:
            raise type(exc)(exc.message, field="model") from None

    async def _compiled(self, ref: ModelRef) -> ResolvedModel:
        try:
            record = await self._registry.get_compiled_artifact(ref.value)
        except (NotFound, InvalidArgument) as exc:
            raise type(exc)(exc.message, field="model") from None
        files = _check_compiled_id(record)
        primary = next((f for f in files if f.sha256 == record.sha256), None)
        if primary is None or not primary.path.endswith(".onnx"):
            raise FailedPrecondition(f"compiled {record.target!r} outputs ({record.triton_platform or 'unknown'}) "
                                     "are not servable here; deploy the artifact or its onnx compile", field="model")
        source = await self._artifact(record.source_artifact_id)
        metadata = serving_metadata(artifact_manifest(source, field="model").metadata)
        architecture_type(metadata)
        folder = self._compiled_root / record.id.removeprefix("sha256:")
        await asyncio.gather(*(self._materialise(folder, f) for f in files))
        return ResolvedModel(ref, ref.text, metadata, onnx_path=folder / primary.path)

    async def _materialise(self, folder: Path, entry: ManifestFile) -> None:
        """The file in `folder`, fetched verified, or already there and hashed again (a bad copy is removed)."""
        target = folder / entry.path
        if target.is_file() and not target.is_symlink():
            digest, size = await asyncio.to_thread(sha256_file, target)
            if digest == entry.sha256 and size == entry.size:
                return
            target.unlink(missing_ok=True)
            raise IntegrityError(f"sha256 mismatch for {entry.path} of the compiled artifact", field="model")
        try:
            await self._store.fetch(entry.sha256, target, expected_size=entry.size, label=entry.path,
                                    tmp_dir=self._compiled_root / ".partial")
        except NotFound:
            raise NotFound(f"{entry.path} ({entry.sha256}) is not in the object store", field="model") from None
