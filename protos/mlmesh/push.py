"""A push from the caller's disk: the files of a model (one file or a folder) hashed, then sent as a
header and 1 MiB chunks over one client-streaming call (no message-size limit applies to the model)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlmesh.v1 import common_pb2, puller_pb2

CHUNK_BYTES = 1024 * 1024
INTERFACES = {
    "": common_pb2.INTERFACE_KIND_UNSPECIFIED, "predictor": common_pb2.INTERFACE_KIND_PREDICTOR,
    "forecaster": common_pb2.INTERFACE_KIND_FORECASTER, "classifier": common_pb2.INTERFACE_KIND_CLASSIFIER,
    "segmenter": common_pb2.INTERFACE_KIND_SEGMENTER, "analyzer": common_pb2.INTERFACE_KIND_ANALYZER,
}

# (stage, bytes done, bytes in all): "hash" while files are hashed, "upload" while they are sent.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LocalFile:
    path: str          # inside the push, forward slashes
    source: Path       # on this disk
    size: int
    sha256: str

    def message(self) -> puller_pb2.PushFile:
        return puller_pb2.PushFile(path=self.path, size=self.size, sha256=self.sha256)


def collect(path: str | Path) -> list[tuple[str, Path]]:
    """(path in the push, file on disk) for a file or every file under a folder; links are not followed."""
    root = Path(path)
    if root.is_symlink():
        raise ValueError(f"{root} is a symbolic link: push the file it points to")
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist")
    files = []
    for item in sorted(root.rglob("*")):
        if item.is_symlink():
            raise ValueError(f"{item} is a symbolic link: a pushed folder holds plain files only")
        if item.is_file():
            files.append((item.relative_to(root).as_posix(), item))
    if not files:
        raise ValueError(f"{root} holds no files")
    return files


def hash_files(entries: list[tuple[str, Path]], progress: ProgressCallback) -> list[LocalFile]:
    total = sum(source.stat().st_size for _, source in entries)
    done, hashed = 0, []
    for path, source in entries:
        digest, size = hashlib.sha256(), 0
        with source.open("rb") as f:
            while block := f.read(CHUNK_BYTES):
                digest.update(block)
                size += len(block)
                done += len(block)
                progress("hash", done, total)
        hashed.append(LocalFile(path, source, size, digest.hexdigest()))
    return hashed


def requests(header: puller_pb2.PushHeader, files: list[LocalFile],
             progress: ProgressCallback) -> Iterator[puller_pb2.PushRequest]:
    """The header, then every file's bytes in order."""
    yield puller_pb2.PushRequest(header=header)
    total, done = sum(f.size for f in files), 0
    for file in files:
        offset = 0
        with file.source.open("rb") as f:
            while block := f.read(CHUNK_BYTES):
                yield puller_pb2.PushRequest(chunk=puller_pb2.PushChunk(path=file.path, offset=offset, data=block))
                offset += len(block)
                done += len(block)
                progress("upload", done, total)
