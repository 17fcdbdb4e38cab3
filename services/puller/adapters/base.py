"""What every adapter returns, and how blocking downloads run beside the event loop.

Hub clients are blocking, so downloads run in worker threads. A `TransferMeter` is shared between the
thread and the loop: the thread adds bytes to it (and stops at its next chunk once the meter is
stopped); the loop turns it into operation progress. Cancelling the awaiting task stops the meter and
waits for the thread to drop its partial file before the cancel goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from services.core.errors import Cancelled
from services.core.operations.runner import ProgressReporter

T = TypeVar("T")
_PUMP_INTERVAL_S = 0.1


@dataclass(frozen=True)
class PullOptions:
    """What the request asks of an adapter beyond the source."""

    allow_patterns: tuple[str, ...] = ()
    allow_pickle: bool = False


@dataclass(frozen=True)
class FetchedFile:
    path: str  # inside the artifact, forward slashes
    local: Path  # the verified copy in the staging folder
    sha256: str
    size: int


@dataclass
class Fetched:
    """A verified pull, staged: files to store as they are, and pickle weights loaded weights-only
    (artifact path -> state dict) that still have to be written as safetensors."""

    source_uri: str  # pinned: hf://org/name@<commit>, torchhub://owner/repo:ref/entry@sha256:<hex>
    files: list[FetchedFile] = field(default_factory=list)
    state_dicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    framework: str = "torch"
    metadata: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)  # for the "pull" lineage event


class DownloadCancelled(Exception):
    """Raised inside a worker thread at its next chunk once the operation was cancelled."""


class TransferMeter:
    """Bytes and files moved by one pull. Written by one worker thread at a time, read by the loop."""

    def __init__(self) -> None:
        self.total_bytes = 0
        self.total_files = 0
        self.files_done = 0
        self._finished_bytes = 0
        self._current = 0
        self.stop = threading.Event()

    @property
    def bytes_done(self) -> int:
        return self._finished_bytes + max(0, self._current)

    def add(self, count: int) -> None:
        if self.stop.is_set():
            raise DownloadCancelled()
        self._current += count  # negative when a client rewinds a retried download

    def file_finished(self, size: int) -> None:
        self._finished_bytes += size
        self._current = 0
        self.files_done += 1

    def file_failed(self) -> None:
        self._current = 0

    def bar(self, *args: Any, **kwargs: Any) -> "MeterBar":
        """A tqdm stand-in for clients that report through a progress bar class."""
        return MeterBar(self)


class MeterBar:
    def __init__(self, meter: TransferMeter) -> None:
        self._meter = meter

    def __enter__(self) -> "MeterBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float | None = 1) -> None:
        self._meter.add(int(n or 0))

    def close(self) -> None:
        return None


async def run_blocking(
    fn: Callable[..., T], *args: Any, meter: TransferMeter, reporter: ProgressReporter | None, stage: str
) -> T:
    """`fn(*args)` in a worker thread, its meter reported as progress; a cancel stops it at the next chunk."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        while True:
            done, _ = await asyncio.wait([future], timeout=_PUMP_INTERVAL_S)
            if reporter is not None:
                if reporter.cancelled:
                    meter.stop.set()
                files = f"{meter.files_done}/{meter.total_files} files" if meter.total_files else ""
                await reporter.progress(meter.bytes_done, meter.total_bytes, "bytes", stage, files)
            if done:
                return future.result()
    except DownloadCancelled:
        raise Cancelled("operation cancelled", field="id") from None
    except asyncio.CancelledError:
        meter.stop.set()
        await asyncio.wait([future], timeout=30)  # the thread removes its partial file as it stops
        raise


def stage_copy(src: Path, dest: Path) -> None:
    """Place a cached file in the staging folder: a hard link when possible (cache blobs are never
    rewritten in place), else a copy. Whatever lands is hashed again before it is trusted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(os.path.realpath(src), dest)
    except OSError:
        shutil.copyfile(src, dest)


def digests(path: Path) -> tuple[str, str, int]:
    """(sha256 hex, git blob sha1 hex, size) of a file in one read."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            sha256.update(block)
            git.update(block)
    return sha256.hexdigest(), git.hexdigest(), size
