"""Turn a staged, verified pull into an artifact folder: converted weights written as safetensors,
a `.sha256` sidecar beside every safetensors file, and the manifest of exactly the folder's files
(what the signature covers and what LoadHandler checks)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlmesh.v1 import common_pb2
from services.core.artifacts.manifest import Manifest, parse_manifest
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.sidecar import is_sidecar, sidecar_name, write_sidecar
from services.core.artifacts.signing import ArtifactSigner
from services.puller.adapters.base import Fetched
from services.puller.weights import is_safetensors

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_MEDIA_TYPES = {".safetensors": "application/vnd.safetensors", ".json": "application/json", ".sha256": "text/plain",
                ".onnx": "application/onnx", ".txt": "text/plain", ".md": "text/markdown"}


def write_safetensors(state_dict: Mapping[str, Any], dest: Path) -> None:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared storage)."""
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, value in state_dict.items():
        tensor = value.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if storage in seen and tensor.numel():
            tensor = tensor.clone()  # tied weights
        seen.add(storage)
        tensors[name] = tensor
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest), metadata={"format": "pt"})


def build_folder(staging: Path, fetched: Fetched) -> Manifest:
    """Write converted weights and sidecars into `staging`; the manifest of every file in it.
    Blocking (hashes files): run it in a worker thread."""
    for path, state_dict in fetched.state_dicts.items():
        write_safetensors(state_dict, staging / path)
    digests = {f.path: (f.sha256, f.size) for f in fetched.files if not is_sidecar(f.path)}
    for path in fetched.state_dicts:
        digests[path] = sha256_file(staging / path)
    for path, (sha256, _size) in list(digests.items()):
        if is_safetensors(path):
            sidecar = write_sidecar(staging / path, sha256)  # replaces a same-named file from the repo
            digests[sidecar_name(path)] = sha256_file(sidecar)
    for stale in (f for f in fetched.files if is_sidecar(f.path) and f.path not in digests):
        (staging / stale.path).unlink(missing_ok=True)  # a repo sidecar with no weights beside it: not ours to sign
    files = [
        {"path": path, "sha256": sha256, "size": size, "media_type": _media_type(path)}
        for path, (sha256, size) in sorted(digests.items())
    ]
    weights = [p for p in digests if is_safetensors(p)]
    fmt = "safetensors" if weights else ("onnx" if any(p.endswith(".onnx") for p in digests) else "files")
    return parse_manifest({"files": files, "framework": fetched.framework, "format": fmt,
                           "metadata": fetched.metadata})


def signature_message(signer: ArtifactSigner, bundle: bytes) -> common_pb2.Signature:
    return common_pb2.Signature(media_type=BUNDLE_MEDIA_TYPE, bundle=bundle, key_id=_key_id(signer))


def _key_id(signer: ArtifactSigner) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from services.core.auth.keys import key_id

    try:
        return key_id(load_pem_public_key(signer.public_key_path.read_bytes()))
    except (OSError, ValueError, TypeError, AttributeError):
        return ""  # sigstore mode: the identity is in the bundle


def _media_type(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1] if "." in path else ""
    return _MEDIA_TYPES.get(suffix.lower(), "application/octet-stream")
