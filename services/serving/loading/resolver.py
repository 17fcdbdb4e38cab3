"""A model reference -> what a backend is built from, fetched and verified through the artifact toolkit.

- artifact: the registry's record -> its manifest must hash to its id -> the CacheHandler loads it
  (the LoadHandler checks hashes, sidecars and the signature before anything is deserialised; an
  unsigned or tampered artifact is refused with IntegrityError naming the check). A "transformers"
  artifact (a snapshot: config.json, tokenizer files, safetensors) also gives its verified folder, whose
  other files are hashed again right before the backend reads them (a cache hit skips the LoadHandler);
- compiled: the registry's record must hash to its id (files + what it was made from), its files are
  fetched with their hashes checked, the record's signature bundle must verify over exactly those files
  (a record and files forged consistently, unsigned or signed by an untrusted key, are refused before
  anything is deserialised), and the source artifact (whose manifest must hash to its id) gives the
  metadata; files the record does not list are removed from the folder, and Triton's repository entry
  is copied from it; ONNX, TorchScript (.pt) and AOTInductor (.pt2) outputs are served (TensorRT plans
  need Triton's own backend). The compiled graph of an imported model keeps the source's tensors: it is
  served like the source artifact, with that graph as its runtime;
- imported (manifest framework onnx / xgboost / lightgbm, docs/byom.md): its metadata's runtime and
  signature are checked before anything is fetched, then the LoadHandler materialises the verified
  folder (hashes and signature; the folder under the artifact cache, per artifact id, is re-hashed on
  every deploy rather than fetched again); the manifest's digests travel with it, so the files the
  runtime reads are hashed once more right before they are loaded;
- builtin: nothing to fetch.
The registry is called with the service's own identity; the toolkit checks the Deploy caller's scope.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from google.protobuf import json_format

from mlmesh.v1 import common_pb2
from services.core.artifacts.cache import CacheHandler
from services.core.artifacts.load import LoadHandler, select_weights
from services.core.artifacts.manifest import Manifest, ManifestFile, compiled_content_id
from services.core.artifacts.messages import artifact_manifest, files_list
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.clients.registry import RegistryClient
from services.core.errors import FailedPrecondition, IntegrityError, InvalidArgument, NotFound
from services.serving.interfaces.backends.imported.signature import IMPORTED_FRAMEWORKS, parse_signature, runtime_spec
from services.serving.interfaces.backends.transformers_text import TASKS
from services.serving.loading.metadata import architecture_type, serving_metadata
from services.serving.loading.refs import ModelRef

SERVABLE_FRAMEWORKS = ("torch", "")
TRANSFORMERS = "transformers"
COMPILED_SUFFIXES = (".onnx", ".pt", ".pt2")


@dataclass(frozen=True)
class ResolvedModel:
    ref: ModelRef
    # What is served, as a typed lineage ref: "sha256:<hex>" (an artifact), "compiled:sha256:<hex>" or
    # "builtin:<name>"; the deploy event's input and every answer's ResponseMeta.artifact_id.
    artifact_id: str
    metadata: dict[str, Any]             # serving_metadata() of the (source) artifact
    state_dict: dict[str, Any] | None = None   # verified torch weights (artifacts)
    onnx_path: Path | None = None              # verified ONNX graph (compiled artifacts)
    compiled_path: Path | None = None          # verified TorchScript .pt / AOTInductor .pt2 (compiled artifacts)
    compiled_max_batch_size: int = 0           # the compile's max_batch_size (a .pt2's batch range ends there)
    folder: Path | None = None                 # the verified artifact folder (transformers snapshots, imported)
    framework: str = ""                        # the manifest's framework ("torch", "transformers", "onnx", ...)
    # path -> (sha256, size) of the manifest's files (imported models: hashed again right before the load)
    files: dict[str, tuple[str, int]] | None = None


def _check_compiled_id(record: common_pb2.CompiledArtifact) -> tuple[list[ManifestFile], dict[str, Any]]:
    """The record's files and kwargs, once its content id (files + source + compiler + parameters) checks out."""
    files = [ManifestFile.model_validate(f) for f in files_list(record.files)]
    kwargs = json_format.MessageToDict(record.kwargs)
    identity = compiled_content_id(record.source_artifact_id, record.compiler, record.target,
                                   [f.model_dump(mode="json") for f in files], kwargs)
    if identity != record.id:
        raise IntegrityError(f"compiled artifact {record.id} does not hash to its id", field="model")
    return sorted(files, key=lambda f: f.path), kwargs


def _recheck_files(folder: Path, manifest: Manifest) -> None:
    """Every file but the weights (already in memory as verified tensors) must still hash as listed."""
    _, weights = select_weights(manifest)
    for entry in manifest.files:
        if entry.path not in weights and sha256_file(folder / entry.path) != (entry.sha256, entry.size):
            raise IntegrityError(f"sha256 mismatch for {entry.path}: it changed after verification", field="model")


def _prune(folder: Path, listed: set[str]) -> None:
    """Remove whatever in a compiled folder its record does not list (nothing unverified sits beside the
    verified files, e.g. a `<model>.onnx.data` that Triton's entry would copy along)."""
    for path in sorted(folder.rglob("*"), reverse=True):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink() or (path.is_file() and relative not in listed):
            path.unlink(missing_ok=True)
        elif path.is_dir() and not any(p == relative or p.startswith(relative + "/") for p in listed):
            shutil.rmtree(path, ignore_errors=True)


class ModelResolver:
    def __init__(self, registry: RegistryClient, cache: CacheHandler, store: StoreHandler, signer: ArtifactSigner,
                 compiled_root: Path, *, loader: LoadHandler | None = None) -> None:
        self._registry = registry
        self._cache = cache
        self._loader = loader  # materialises imported models' folders (the cache holds torch tensors only)
        self._store = store
        self._signer = signer
        self._compiled_root = Path(compiled_root)

    async def resolve(self, ref: ModelRef) -> ResolvedModel:
        if ref.kind == "builtin":
            return ResolvedModel(ref, ref.value, {})
        if ref.kind == "compiled":
            return await self._compiled(ref)
        artifact = await self._artifact(ref.value)
        manifest = artifact_manifest(artifact, field="model")
        metadata = serving_metadata(manifest.metadata)
        if manifest.framework == TRANSFORMERS:
            return await self._snapshot(ref, artifact, manifest, metadata)
        if manifest.framework in IMPORTED_FRAMEWORKS:
            return await self._imported(ref, artifact, manifest, metadata)
        architecture_type(metadata)  # refuse before fetching anything
        if manifest.framework not in SERVABLE_FRAMEWORKS:
            raise FailedPrecondition(f"serving runs torch weights, transformers snapshots, imported models "
                                     f"{list(IMPORTED_FRAMEWORKS)} or compiled outputs; {artifact.id} is "
                                     f"{manifest.framework}/{manifest.format}", field="model")
        loaded = await self._cache.get(manifest, bytes(artifact.signature.bundle))
        return ResolvedModel(ref, artifact.id, metadata, state_dict=loaded.state_dict, framework=manifest.framework)

    async def _snapshot(self, ref: ModelRef, artifact: common_pb2.Artifact, manifest: Manifest,
                        metadata: dict[str, Any]) -> ResolvedModel:
        """A transformers snapshot: verified tensors, and its folder for config and tokenizer files."""
        task = metadata.get("task") or TASKS[0]
        if task not in TASKS:  # refused before anything is fetched
            raise FailedPrecondition(f"serving runs transformers {list(TASKS)} models; {artifact.id} is {task!r}",
                                     field="model")
        loaded = await self._cache.get(manifest, bytes(artifact.signature.bundle))
        try:
            await asyncio.to_thread(_recheck_files, loaded.folder, manifest)
        except (IntegrityError, OSError) as exc:
            self._cache.evict(artifact.id)  # the next deploy loads (and verifies) it again
            if isinstance(exc, IntegrityError):
                raise
            raise IntegrityError(f"the verified folder of {artifact.id} changed: {exc}", field="model") from None
        return ResolvedModel(ref, artifact.id, metadata, state_dict=loaded.state_dict, folder=loaded.folder,
                             framework=TRANSFORMERS)

    async def _imported(self, ref: ModelRef, artifact: common_pb2.Artifact, manifest: Manifest,
                        metadata: dict[str, Any]) -> ResolvedModel:
        """An imported model: its verified folder, and the manifest's digests for the re-hash at load."""
        parse_signature(metadata)  # refused before anything is fetched
        file = runtime_spec(metadata)["file"]
        if manifest.file(file) is None:
            raise FailedPrecondition(f"metadata.runtime.file {file!r} is not a file of {artifact.id}", field="model")
        if self._loader is None:
            raise FailedPrecondition("this serving service has no artifact loader for imported models", field="model")
        folder = await self._loader.materialise(manifest, bytes(artifact.signature.bundle), expected_id=artifact.id)
        files = {f.path: (f.sha256, f.size) for f in manifest.files}
        return ResolvedModel(ref, artifact.id, metadata, folder=folder, framework=manifest.framework, files=files)

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
        files, kwargs = _check_compiled_id(record)
        primary = next((f for f in files if f.sha256 == record.sha256), None)
        suffix = PurePosixPath(primary.path).suffix if primary is not None else ""
        if suffix not in COMPILED_SUFFIXES:
            raise FailedPrecondition(f"compiled {record.target!r} outputs ({record.triton_platform or 'unknown'}) "
                                     f"are not servable here (it serves {list(COMPILED_SUFFIXES)}); deploy the "
                                     "artifact, or its onnx or torchscript compile", field="model")
        source = await self._artifact(record.source_artifact_id)
        source_manifest = artifact_manifest(source, field="model")
        metadata = serving_metadata(source_manifest.metadata)
        imported = source_manifest.framework in IMPORTED_FRAMEWORKS
        if imported:  # the compiler keeps an imported graph's own tensors (metadata.signature)
            parse_signature(metadata)
            if suffix != ".onnx":
                raise FailedPrecondition(f"an imported model's compiled outputs are ONNX graphs; {primary.path} is "
                                         "not", field="model")
        else:
            architecture_type(metadata)
        folder = self._compiled_root / record.id.removeprefix("sha256:")
        await asyncio.gather(*(self._materialise(folder, f) for f in files))
        await asyncio.to_thread(_prune, folder, {f.path for f in files})
        await self._verify_signature(record, folder, files)
        if imported:  # served like the artifact, with the compiled graph as its runtime
            runtime = {**(metadata.get("runtime") or {}), "kind": "onnxruntime", "file": primary.path}
            return ResolvedModel(ref, ref.text, {**metadata, "runtime": runtime}, onnx_path=folder / primary.path,
                                 folder=folder, framework=source_manifest.framework,
                                 files={f.path: (f.sha256, f.size) for f in files})
        if suffix == ".onnx":
            return ResolvedModel(ref, ref.text, metadata, onnx_path=folder / primary.path)
        batch = kwargs.get("max_batch_size")
        return ResolvedModel(ref, ref.text, metadata, compiled_path=folder / primary.path,
                             compiled_max_batch_size=int(batch) if isinstance(batch, (int, float)) else 0)

    async def _verify_signature(self, record: common_pb2.CompiledArtifact, folder: Path,
                                files: list[ManifestFile]) -> None:
        """The record's bundle must sign exactly its files as materialised in `folder` with a trusted key."""
        try:
            await asyncio.to_thread(self._signer.verify_files, folder, [f.path for f in files],
                                    bytes(record.signature.bundle))
        except IntegrityError as exc:
            raise IntegrityError(f"compiled artifact {record.id}: {exc.message}", field="model") from None

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
