"""Saving a transformers snapshot folder (what `save_pretrained` writes) as a signed artifact with
framework "transformers": the producer side of what the resolver deploys as an Analyzer or Classifier.

The SaveHandler writes one state dict; a snapshot is a folder (config.json, tokenizer files, weights).
The steps are the puller's (`build_folder` + `_store_folder`), done with the core toolkit's pieces:
copy the files into a private staging folder (the caller's folder is never touched), write a `.sha256`
sidecar beside every safetensors file, list exactly the folder's files in the manifest, sign the folder
(ArtifactSigner), store each file and the bundle (StoreHandler), move the folder into the artifact
cache under its id (as the SaveHandler does), and emit one "save" lineage event.
Pickle weights and Python files are refused: serving never unpickles nor runs code from an artifact.
Registering is the caller's job: `registry.register_artifact(saved.manifest, signature=
signature_message(signer, saved.signature))`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.core.artifacts.handlers import MLOpsHandler
from services.core.artifacts.manifest import Manifest, parse_manifest
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.save import SavedArtifact
from services.core.artifacts.sidecar import SUFFIX as SIDECAR_SUFFIX
from services.core.artifacts.sidecar import sidecar_name, write_sidecar
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.artifacts.toolkit import ArtifactToolkit
from services.core.auth.policy import REGISTRY_WRITE
from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.lineage import LineageBus, artifact_entity, normalize_entity, source_entity

FRAMEWORK = "transformers"
REFUSED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".py", ".pyc")
_MEDIA_TYPES = {".safetensors": "application/vnd.safetensors", ".json": "application/json",
                ".sha256": "text/plain", ".txt": "text/plain", ".model": "application/octet-stream"}


def _snapshot_files(folder: Path) -> list[str]:
    """The snapshot's files (relative, forward slashes); its own sidecars are dropped (ours replace them)."""
    if not (folder / "config.json").is_file():
        raise InvalidArgument(f"{folder} has no config.json: not a transformers snapshot", field="folder")
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    refused = [p for p in paths if p.lower().endswith(REFUSED_SUFFIXES)]
    if refused:
        raise FailedPrecondition(f"{refused[0]}: pickle weights and code are refused; save with "
                                 "safe_serialization (safetensors) and without custom code", field="folder")
    if not any(p.endswith(".safetensors") for p in paths):
        raise FailedPrecondition("no .safetensors weights in the snapshot", field="folder")
    return [p for p in paths if not p.endswith(SIDECAR_SUFFIX)]


def snapshot_metadata(folder: Path, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's metadata with `task` (text-classification) and `class_labels` (config's id2label)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"config.json is not readable JSON: {exc}", field="folder") from None
    if not isinstance(config, dict) or "auto_map" in config:
        raise FailedPrecondition("config.json names custom code (auto_map); serving would refuse it", field="folder")
    meta = {"task": "text-classification", **dict(metadata or {})}
    id2label = config.get("id2label")
    if "class_labels" not in meta and isinstance(id2label, dict):
        meta["class_labels"] = [id2label[k] for k in sorted(id2label, key=int)]
    return meta


def _stage(folder: Path, staging: Path, paths: list[str], metadata: dict[str, Any]) -> Manifest:
    """Copies, sidecars and the manifest of exactly the staging folder's files. Blocking."""
    entries = []
    for path in paths:
        target = staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / path, target)  # follows links: a hub cache snapshot links to its blobs
        digest, size = sha256_file(target)
        entries.append((path, digest, size))
        if path.endswith(".safetensors"):
            sidecar = write_sidecar(target, digest)
            entries.append((sidecar_name(path), *sha256_file(sidecar)))
    files = [{"path": p, "sha256": d, "size": n,
              "media_type": _MEDIA_TYPES.get(Path(p).suffix, "application/octet-stream")} for p, d, n in entries]
    return parse_manifest({"files": files, "framework": FRAMEWORK, "format": "safetensors", "metadata": metadata})


def _settle(staging: Path, final: Path) -> Path:
    """The staging folder becomes the artifact's cache folder (the loader verifies it again before use);
    one already there (the same content, saved before) is kept."""
    if not final.exists():
        try:
            staging.rename(final)
        except OSError:
            pass  # a concurrent save of the same content won
    return final


class SnapshotSaver(MLOpsHandler):
    """Saves snapshot folders; `scope` is what the caller must hold (policy first, lineage after)."""

    def __init__(self, store: StoreHandler, signer: ArtifactSigner, bus: LineageBus, staging_root: Path, *,
                 scope: str = REGISTRY_WRITE, service: str = "") -> None:
        super().__init__(bus, service=service)
        self._store = store
        self._signer = signer
        self._staging_root = Path(staging_root)
        self.scope = scope

    @classmethod
    def from_toolkit(cls, kit: ArtifactToolkit) -> SnapshotSaver:
        """Over the toolkit's store and signer, with its SaveHandler's scope, service and lineage bus."""
        return cls(kit.store, kit.signer, kit.saver.bus, kit.loader.cache_root, scope=kit.saver.scope,
                   service=kit.saver.service)

    async def save(self, folder: Path | str, *, metadata: Mapping[str, Any] | None = None, source: str | None = None,
                   parents: Sequence[str] = ()) -> SavedArtifact:
        folder = Path(folder)
        async with self.lifecycle("save", self.scope) as op:
            paths = await asyncio.to_thread(_snapshot_files, folder)
            meta = await asyncio.to_thread(snapshot_metadata, folder, metadata)
            staging = self._staging_root / f".snapshot-{secrets.token_hex(8)}"
            try:
                manifest = await asyncio.to_thread(_stage, folder, staging, paths, meta)
                artifact_id = manifest.artifact_id
                signature = await asyncio.to_thread(self._signer.sign, staging)
                lineage = {"artifact_id": artifact_id, **({"source": source} if source else {})}
                objects = [await self._store.put_file(staging / f.path, lineage={**lineage, "path": f.path},
                                                      expected_sha256=f.sha256) for f in manifest.files]
                signature_object = await self._store.put_bytes(signature, lineage={**lineage, "path": "signature"})
                final = self._staging_root / artifact_id.removeprefix("sha256:")
                settled = await asyncio.to_thread(_settle, staging, final)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
            op.record(
                inputs=[normalize_entity(p) for p in parents] + ([source_entity(source)] if source else []),
                outputs=[artifact_entity(artifact_id)],
                parameters={"framework": FRAMEWORK, "format": manifest.format, "size": manifest.total_size,
                            "files": [f.path for f in manifest.files], "signature_sha256": signature_object.sha256},
            )
        return SavedArtifact(manifest, artifact_id, signature, settled, tuple(objects), signature_object)
