"""Turn a staged, verified pull into an artifact folder: converted weights written as safetensors,
a `.sha256` sidecar beside every safetensors file, and the manifest of exactly the folder's files
(what the signature covers and what LoadHandler checks)."""

from __future__ import annotations

from pathlib import Path

from services.core.artifacts.manifest import Manifest, parse_manifest
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.sidecar import is_sidecar, sidecar_name, write_sidecar
from services.core.artifacts.save import write_safetensors
from services.core.errors import InvalidArgument
from services.puller.adapters.base import Fetched
from services.puller.weights import is_safetensors

_MEDIA_TYPES = {".safetensors": "application/vnd.safetensors", ".json": "application/json", ".sha256": "text/plain",
                ".onnx": "application/onnx", ".txt": "text/plain", ".md": "text/markdown", ".ubj": "application/ubjson",
                ".npy": "application/x-npy"}


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


def _media_type(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1] if "." in path else ""
    return _MEDIA_TYPES.get(suffix.lower(), "application/octet-stream")


def manifest_of_folder(folder: Path, *, framework: str, fmt: str, metadata: dict) -> Manifest:
    """The manifest of every file under `folder` (a pushed model, with what inspection derived from it), a
    `.sha256` sidecar written beside each safetensors file first. Symlinks are refused, never followed.
    Blocking (hashes files): run it in a worker thread."""
    paths = sorted(p for p in folder.rglob("*") if p.is_symlink() or p.is_file())
    if any(p.is_symlink() for p in paths):
        raise InvalidArgument("symbolic links are not stored", field="files")
    for path in [p for p in paths if is_safetensors(p.name)]:
        sidecar = write_sidecar(path)
        if sidecar not in paths:
            paths.append(sidecar)
    files = []
    for path in sorted(paths):
        relative = path.relative_to(folder).as_posix()
        sha256, size = sha256_file(path)
        files.append({"path": relative, "sha256": sha256, "size": size, "media_type": _media_type(relative)})
    return parse_manifest({"files": files, "framework": framework, "format": fmt, "metadata": metadata})
