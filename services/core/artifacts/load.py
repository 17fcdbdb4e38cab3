"""`LoadHandler`: a manifest + signature -> verified files in the local cache -> tensors.

Nothing is deserialised until every check passed, in this order:
1. the manifest hashes to the id the caller expects (when given);
2. weights are chosen: safetensors when any exist, else pickle (.bin/.pt/.pth), which is refused
   unless the operator allowed `weights_only` loading for this artifact id (nothing is fetched then);
3. every weights file has a `.sha256` sidecar in the manifest;
4. each file's size and sha256 match the manifest: a fetch from the store is verified while it
   streams, and a file already in the cache folder is hashed again on disk (a file that fails is
   deleted, so the next load fetches a verified copy, and this load is refused);
5. the signature verifies over the folder (exactly the manifest's files: an extra file fails it);
6. each sidecar records its weights file's digest;
7. each safetensors header is sane (safetensors_guard), read before the file is;
8. the weights are read once into private memory and hashed again there (weights.py): tensors are
   built from exactly the verified bytes, not from a file mapping that a later write could change.
Pickle, when allowed, is read only with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.artifacts.handlers import MLOpsHandler
from services.core.artifacts.manifest import Manifest, ManifestFile
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.safetensors_guard import check_safetensors
from services.core.artifacts.sidecar import check_sidecar, is_sidecar, sidecar_name, weights_name
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.artifacts.weights import pickle_weights_only, read_verified, safetensors_from_buffer
from services.core.auth.policy import REGISTRY_READ
from services.core.errors import FailedPrecondition, IntegrityError, NotFound
from services.core.lineage import LineageBus, artifact_entity
from services.core.settings import ArtifactSettings

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
FETCH_CONCURRENCY = 8  # files fetched or re-hashed at once (a manifest may list thousands)


@dataclass(frozen=True)
class LoadedModel:
    artifact_id: str
    state_dict: dict[str, Any]
    metadata: dict[str, Any]
    weights_format: str  # "safetensors" or "pickle"
    weights_files: tuple[str, ...]
    folder: Path

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.state_dict.values())


def select_weights(manifest: Manifest) -> tuple[str, tuple[str, ...]]:
    """("safetensors", files) when the artifact has any, else ("pickle", files); safetensors always wins."""
    paths = [f.path for f in manifest.files if not is_sidecar(f.path)]
    safetensors = tuple(p for p in paths if p.endswith(SAFETENSORS_SUFFIX))
    if safetensors:
        return "safetensors", safetensors
    pickles = tuple(p for p in paths if p.endswith(PICKLE_SUFFIXES))
    if pickles:
        return "pickle", pickles
    raise FailedPrecondition("no weights file (.safetensors, .bin, .pt, .pth) in the manifest", field="manifest.files")


class LoadHandler(MLOpsHandler):
    def __init__(
        self,
        store: StoreHandler,
        signer: ArtifactSigner,
        settings: ArtifactSettings,
        cache_root: Path,
        bus: LineageBus,
        *,
        scope: str = REGISTRY_READ,
        service: str = "",
    ) -> None:
        super().__init__(bus, service=service)
        self._store = store
        self._signer = signer
        self._settings = settings
        self.cache_root = Path(cache_root)
        self.scope = scope

    def folder_for(self, artifact_id: str) -> Path:
        return self.cache_root / artifact_id.removeprefix("sha256:")

    async def materialise(self, manifest: Manifest, signature: bytes, *, expected_id: str | None = None) -> Path:
        """The artifact's verified folder (files, signature, sidecars), for consumers that read files
        themselves (compilers, ONNX runtimes). Emits "materialise"."""
        async with self.lifecycle("materialise", self.scope) as op:
            _check_id(manifest, expected_id)
            folder = await self._verified_folder(manifest, signature, _sidecar_targets(manifest))
            op.record(inputs=[artifact_entity(manifest.artifact_id)], parameters={"folder": str(folder)})
        return folder

    async def load(self, manifest: Manifest, signature: bytes, *, expected_id: str | None = None) -> LoadedModel:
        async with self.lifecycle("load", self.scope) as op:
            _check_id(manifest, expected_id)
            artifact_id = manifest.artifact_id
            kind, weights = select_weights(manifest)
            if kind == "pickle" and artifact_id not in self._settings.weights_only_pickle_allow:
                raise FailedPrecondition(
                    f"pickle weights refused for {weights[0]}: artifact {artifact_id} is not allowed "
                    "weights_only loading"
                )
            for path in weights:
                if manifest.file(sidecar_name(path)) is None:
                    raise IntegrityError(f"sidecar missing for {path}")
            folder = await self._verified_folder(manifest, signature, weights)
            state_dict = await asyncio.to_thread(self._deserialise, folder, manifest, kind, weights)
            op.record(
                inputs=[artifact_entity(artifact_id)],
                parameters={"format": kind, "files": list(weights), "tensors": len(state_dict)},
            )
        return LoadedModel(artifact_id, state_dict, dict(manifest.metadata), kind, weights, folder)

    async def _verified_folder(self, manifest: Manifest, signature: bytes, sidecar_targets: tuple[str, ...]) -> Path:
        folder = self.folder_for(manifest.artifact_id)
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(entry: ManifestFile) -> None:
            async with limit:
                await self._materialise_file(folder, entry)

        # Let every fetch finish before reporting a failure, so none keeps writing after the load returned.
        results = await asyncio.gather(*(one(entry) for entry in manifest.files), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        await asyncio.to_thread(self._signer.verify, folder, signature)
        for path in sidecar_targets:
            check_sidecar(folder, path, manifest.file(path).sha256)
        return folder

    async def _materialise_file(self, folder: Path, entry: ManifestFile) -> None:
        target = folder / entry.path
        if target.is_symlink() or target.exists():
            await asyncio.to_thread(_verify_on_disk, target, entry)
            return
        try:
            await self._store.fetch(
                entry.sha256, target, expected_size=entry.size, label=entry.path, tmp_dir=self.cache_root / ".partial"
            )
        except NotFound:
            if is_sidecar(entry.path):
                raise IntegrityError(f"sidecar missing for {weights_name(entry.path)}") from None
            raise NotFound(f"{entry.path} ({entry.sha256}) is not in the object store") from None

    def _deserialise(self, folder: Path, manifest: Manifest, kind: str, weights: tuple[str, ...]) -> dict[str, Any]:
        limit = self._settings.safetensors_max_header_bytes
        state_dict: dict[str, Any] = {}
        for path in weights:
            if kind == "safetensors":
                # Cheap refusal first (8 bytes + header), before the file is read into memory.
                check_safetensors(folder / path, max_header_bytes=limit, label=path)
            buffer = read_verified(folder / path, manifest.file(path))
            if kind == "safetensors":
                part = safetensors_from_buffer(buffer, max_header_bytes=limit, label=path)
            else:
                part = pickle_weights_only(buffer, path)
            duplicate = next((name for name in part if name in state_dict), None)
            if duplicate is not None:
                raise IntegrityError(f"tensor {duplicate!r} appears in more than one weights file ({path})")
            state_dict.update(part)
        return state_dict


def _check_id(manifest: Manifest, expected_id: str | None) -> None:
    if expected_id is not None and manifest.artifact_id != expected_id:
        raise IntegrityError(f"artifact id mismatch: the manifest hashes to {manifest.artifact_id}, not {expected_id}")


def _sidecar_targets(manifest: Manifest) -> tuple[str, ...]:
    return tuple(weights_name(f.path) for f in manifest.files
                 if is_sidecar(f.path) and manifest.file(weights_name(f.path)) is not None)


def _verify_on_disk(target: Path, entry: ManifestFile) -> None:
    """A cached file must still be what the manifest says; a bad one is removed and the load refused."""
    problem = None
    if target.is_symlink() or not target.is_file():
        problem = f"not a regular file: {entry.path}"
    elif target.stat().st_size != entry.size:
        problem = f"size mismatch for {entry.path}: expected {entry.size} bytes, got {target.stat().st_size}"
    elif (digest := sha256_file(target)[0]) != entry.sha256:
        problem = f"sha256 mismatch for {entry.path}: expected {entry.sha256}, got {digest}"
    if problem:
        if target.is_symlink() or target.is_file():
            target.unlink(missing_ok=True)
        raise IntegrityError(problem)
