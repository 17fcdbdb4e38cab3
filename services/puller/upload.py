"""Receiving a push: the header is checked before a byte is written, then each file's bytes are appended
in order to a private staging folder and hashed as they arrive. Only an upload whose every file is
complete and matches its SHA-256 is handed on; anything else is removed with the folder.

Layout of the staging folder: `model/` holds the model's files (what becomes the artifact), `reference/`
the optional sample (never part of the artifact). A single-file push is stored as `model<suffix>`, so the
same bytes pushed under two file names are still the same artifact.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from services.core.canonical import SHA256_HEX, content_id
from services.core.errors import InvalidArgument
from services.core.naming import check_alias, check_name

FORMATS = ("auto", "onnx", "xgboost", "lightgbm", "safetensors", "hf")
INTERFACES = ("", "predictor", "classifier", "forecaster", "segmenter", "analyzer")
REFERENCE_SUFFIXES = (".csv", ".parquet")
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MAX_FILES = 1000
MAX_NAMES = 10_000


@dataclass(frozen=True)
class PushedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PushSpec:
    """What a push asks for; `public()` is what its operation records."""

    name: str
    files: tuple[PushedFile, ...]
    aliases: tuple[str, ...] = ()
    interface: str = ""
    format: str = "auto"
    feature_names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    window: int = 0
    reference: PushedFile | None = None
    allow_pickle: bool = False

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files) + (self.reference.size if self.reference else 0)

    @property
    def upload_digest(self) -> str:
        """The uploaded model's hash: its file's SHA-256, or for a folder the hash of its (path, sha256) list."""
        if len(self.files) == 1:
            return f"sha256:{self.files[0].sha256}"
        return content_id({"files": sorted([f.path, f.sha256] for f in self.files)})

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "interface": self.interface, "format": self.format,
                "feature_names": list(self.feature_names), "labels": list(self.labels), "window": self.window,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
                "reference": ({"path": self.reference.path, "size": self.reference.size,
                               "sha256": self.reference.sha256} if self.reference else None),
                "upload": self.upload_digest, "allow_pickle": self.allow_pickle}


def check_spec(spec: PushSpec, *, max_bytes: int) -> None:
    """Every field of the header, before anything is written."""
    check_name(spec.name)
    for index, alias in enumerate(spec.aliases):
        check_alias(alias, field=f"aliases[{index}]")
    if spec.format not in FORMATS:
        raise InvalidArgument(f"must be one of {', '.join(FORMATS)}", field="format")
    if spec.interface not in INTERFACES:
        raise InvalidArgument(f"must be one of {', '.join(INTERFACES[1:])}", field="interface")
    if not spec.files:
        raise InvalidArgument("a push needs at least one file", field="files")
    if len(spec.files) > MAX_FILES:
        raise InvalidArgument(f"at most {MAX_FILES} files", field="files")
    for index, pushed in enumerate(spec.files):
        _check_file(pushed, f"files[{index}]")
    paths = [f.path for f in spec.files]
    if len(set(paths)) != len(paths):
        raise InvalidArgument("file paths must be unique", field="files")
    if spec.reference is not None:
        _check_file(spec.reference, "reference")
        if not spec.reference.path.lower().endswith(REFERENCE_SUFFIXES):
            raise InvalidArgument("a reference sample is a .csv or .parquet file", field="reference.path")
    for label, names in (("feature_names", spec.feature_names), ("labels", spec.labels)):
        if len(names) > MAX_NAMES:
            raise InvalidArgument(f"at most {MAX_NAMES} entries", field=label)
        for index, value in enumerate(names):
            if not value or len(value) > 256 or not value.isprintable():
                raise InvalidArgument("must be 1-256 printable characters", field=f"{label}[{index}]")
        if len(set(names)) != len(names):
            raise InvalidArgument("entries must be unique", field=label)
    if not 0 <= spec.window <= 100_000:
        raise InvalidArgument("must be between 0 (from the model) and 100000", field="window")
    if spec.total_size > max_bytes:
        raise InvalidArgument(f"the push is {spec.total_size} bytes; this puller accepts at most {max_bytes} "
                              "(MLMESH_PULLER_MAX_PUSH_BYTES)", field="files")


def _check_file(pushed: PushedFile, field: str) -> None:
    path = pushed.path
    if (not path or len(path) > 1024 or path.startswith("/") or "\\" in path or not path.isprintable()
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise InvalidArgument("must be a relative path with forward slashes and no '.', '..' or empty parts",
                              field=f"{field}.path")
    if pushed.size <= 0:
        raise InvalidArgument("an empty file is not a model", field=f"{field}.size")
    if not SHA256_HEX.match(pushed.sha256):
        raise InvalidArgument("must be 64 lowercase hex digits", field=f"{field}.sha256")


@dataclass
class _Receiving:
    target: Path
    expected: PushedFile
    hasher: Any = field(default_factory=hashlib.sha256)
    received: int = 0


class StagedUpload:
    """The files of one push as they arrive. Blocking file I/O: call `write` from a worker thread."""

    def __init__(self, spec: PushSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = Path(folder)
        self.model_dir = self.folder / "model"
        self.reference_path: Path | None = None
        single = len(spec.files) == 1
        self._files: dict[str, _Receiving] = {}
        for pushed in spec.files:
            stored = f"model{PurePosixPath(pushed.path).suffix.lower()}" if single else pushed.path
            self._files[pushed.path] = _Receiving(self.model_dir / stored, pushed)
        if spec.reference is not None:
            suffix = PurePosixPath(spec.reference.path).suffix.lower()
            self.reference_path = self.folder / "reference" / f"sample{suffix}"
            self._files.setdefault(spec.reference.path, _Receiving(self.reference_path, spec.reference))
        self.model_dir.mkdir(parents=True)
        self.received = 0

    def write(self, path: str, offset: int, data: bytes) -> None:
        state = self._files.get(path)
        if state is None:
            raise InvalidArgument(f"{path!r} is not a file of this push's header", field="chunk.path")
        if offset != state.received:
            raise InvalidArgument(f"{path}: chunk at offset {offset}, expected {state.received} (chunks come in order)",
                                  field="chunk.offset")
        if len(data) > MAX_CHUNK_BYTES:
            raise InvalidArgument(f"at most {MAX_CHUNK_BYTES} bytes per chunk", field="chunk.data")
        if state.received + len(data) > state.expected.size:
            raise InvalidArgument(f"{path}: more bytes than the {state.expected.size} announced", field="chunk.data")
        state.target.parent.mkdir(parents=True, exist_ok=True)
        with state.target.open("ab") as out:
            out.write(data)
        state.hasher.update(data)
        state.received += len(data)
        self.received += len(data)
        if state.received == state.expected.size and state.hasher.hexdigest() != state.expected.sha256:
            raise InvalidArgument(f"{path}: the bytes received hash to {state.hasher.hexdigest()}, not the "
                                  f"announced {state.expected.sha256}", field="chunk.data")

    def finish(self) -> None:
        """Every announced file arrived whole (each was hashed when its last byte came)."""
        for path, state in self._files.items():
            if state.received != state.expected.size:
                raise InvalidArgument(f"{path}: the stream ended after {state.received} of {state.expected.size} "
                                      "bytes; nothing was stored", field="files")

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
