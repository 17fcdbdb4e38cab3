"""`SaveHandler`: a torch state_dict -> a signed, stored artifact.

The folder holds `model.safetensors` and its `model.safetensors.sha256` sidecar; the manifest lists
both (framework "torch", format "safetensors", metadata: architecture, training_stats, feature_names);
the folder is signed; every file and the signature bundle go into the store. The folder ends in the
local artifact cache under the artifact's id, so a later load on this machine finds it materialised
(and verifies it again). Registering the artifact is the caller's job (the registry client).
"""

from __future__ import annotations

import asyncio
import shutil
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.artifacts.handlers import MLOpsHandler
from services.core.artifacts.manifest import Manifest, parse_manifest
from services.core.artifacts.objectstore import StoredObject, sha256_file
from services.core.artifacts.sidecar import write_sidecar
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import REGISTRY_WRITE
from services.core.canonical import canonical_json, find_non_finite
from services.core.errors import InvalidArgument
from services.core.lineage import LineageBus, artifact_entity, normalize_entity, source_entity

WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class SavedArtifact:
    """What a caller registers: the manifest (its id), the signature bundle, and where it all went."""

    manifest: Manifest
    artifact_id: str
    signature: bytes
    folder: Path
    objects: tuple[StoredObject, ...]
    signature_object: StoredObject


class SaveHandler(MLOpsHandler):
    def __init__(
        self,
        store: StoreHandler,
        signer: ArtifactSigner,
        cache_root: Path,
        bus: LineageBus,
        *,
        scope: str = REGISTRY_WRITE,
        service: str = "",
    ) -> None:
        super().__init__(bus, service=service)
        self._store = store
        self._signer = signer
        self._cache_root = Path(cache_root)
        self.scope = scope

    async def save(
        self,
        state_dict: Mapping[str, Any],
        *,
        architecture: Mapping[str, Any] | None = None,
        training_stats: Mapping[str, Sequence[float]] | None = None,
        feature_names: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        source: str | None = None,
        parents: Sequence[str] = (),
    ) -> SavedArtifact:
        """`training_stats` is {"mean": [...], "std": [...]} per feature (for the OOD guard)."""
        async with self.lifecycle("save", self.scope) as op:
            meta = _metadata(architecture, training_stats, feature_names, metadata)
            tensors = _tensors(state_dict)
            staging = self._cache_root / f".staging-{secrets.token_hex(8)}"
            try:
                manifest = await asyncio.to_thread(_write_folder, staging, tensors, meta)
                artifact_id = manifest.artifact_id
                signature = await asyncio.to_thread(self._signer.sign, staging)
                lineage = {"artifact_id": artifact_id, **({"source": source} if source else {})}
                objects = []
                for entry in manifest.files:
                    objects.append(await self._store.put_file(
                        staging / entry.path, lineage={**lineage, "path": entry.path}, expected_sha256=entry.sha256
                    ))
                signature_object = await self._store.put_bytes(signature, lineage={**lineage, "path": "signature"})
                final = self._cache_root / artifact_id.removeprefix("sha256:")
                folder = await asyncio.to_thread(_settle, staging, final)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
            op.record(
                inputs=[normalize_entity(p) for p in parents] + ([source_entity(source)] if source else []),
                outputs=[artifact_entity(artifact_id)],
                parameters={
                    "framework": manifest.framework,
                    "format": manifest.format,
                    "files": [f.path for f in manifest.files],
                    "size": manifest.total_size,
                    "signature_sha256": signature_object.sha256,
                },
            )
        return SavedArtifact(manifest, artifact_id, signature, folder, tuple(objects), signature_object)


def _metadata(
    architecture: Mapping[str, Any] | None,
    training_stats: Mapping[str, Sequence[float]] | None,
    feature_names: Sequence[str] | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = dict(extra or {})
    if architecture is not None:
        meta["architecture"] = dict(architecture)
    if training_stats is not None:
        if set(training_stats) != {"mean", "std"}:
            raise InvalidArgument("must hold exactly 'mean' and 'std' lists", field="training_stats")
        mean, std = [float(v) for v in training_stats["mean"]], [float(v) for v in training_stats["std"]]
        if len(mean) != len(std):
            raise InvalidArgument("mean and std need one value per feature", field="training_stats.std")
        if any(v < 0 for v in std):
            raise InvalidArgument("a standard deviation cannot be negative", field="training_stats.std")
        meta["training_stats"] = {"mean": mean, "std": std}
    if feature_names is not None:
        names = [str(n) for n in feature_names]
        if len(set(names)) != len(names):
            raise InvalidArgument("feature names must be unique", field="feature_names")
        if "training_stats" in meta and len(names) != len(meta["training_stats"]["mean"]):
            raise InvalidArgument("one name per feature in training_stats", field="feature_names")
        meta["feature_names"] = names
    bad = find_non_finite(meta, "")
    if bad:
        raise InvalidArgument("must be a finite number", field=bad.lstrip("."))
    try:
        canonical_json(meta)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"must be plain JSON: {exc}", field="metadata") from None
    return meta


def _tensors(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Contiguous CPU tensors, no two sharing storage (safetensors refuses shared storage)."""
    import torch

    if not state_dict:
        raise InvalidArgument("is empty", field="state_dict")
    tensors, seen = {}, set()
    for name, value in state_dict.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise InvalidArgument("every entry must be a named torch.Tensor", field=f"state_dict.{name}")
        tensor = value.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if storage in seen and tensor.numel():
            tensor = tensor.clone()  # tied weights: store each name's own copy
        seen.add(storage)
        tensors[name] = tensor
    return tensors


def write_safetensors(state_dict: Mapping[str, Any], dest: Path) -> None:
    """The state dict as a safetensors file, byte-stable for equal tensors.

    One header metadata key only: safetensors writes `__metadata__` from a hash map, so two or more keys
    come out in a different order per process and equal weights would hash differently.
    """
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(state_dict), str(dest), metadata={"format": "pt"})


def _write_folder(folder: Path, tensors: dict[str, Any], metadata: dict[str, Any]) -> Manifest:
    folder.mkdir(parents=True)
    weights = folder / WEIGHTS_FILE
    write_safetensors(tensors, weights)
    digest, size = sha256_file(weights)
    sidecar = write_sidecar(weights, digest)
    files = [
        {"path": WEIGHTS_FILE, "sha256": digest, "size": size},
        {"path": sidecar.name, "sha256": sha256_file(sidecar)[0], "size": sidecar.stat().st_size,
         "media_type": "text/plain"},
    ]
    return parse_manifest({"files": files, "framework": "torch", "format": "safetensors", "metadata": metadata})


def _settle(staging: Path, final: Path) -> Path:
    """Move the staging folder to its id's place; an existing folder of that id is left as it is."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        try:
            staging.rename(final)
        except OSError:
            pass  # a concurrent save of the same content won; the loader verifies what is there
    return final
