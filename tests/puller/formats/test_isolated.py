"""`run_isolated`: the inspector as a throw-away subprocess, its answers and refusals carried back as the
same domain errors, and a child that dies, runs out of memory or out of time as a clear FailedPrecondition."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from services.core.errors import FailedPrecondition, InvalidArgument
from services.puller.formats import ImportOptions, run_isolated
from tests.puller.formats.conftest import check_contract, push

GIB = 1 << 30


def _children() -> list[int]:
    """Pids whose parent is this process (the inspector)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{os.getpid()}\n" in status:
                found.append(int(entry))
    return found


async def test_end_to_end_in_a_subprocess(tmp_path, sk_classifier):
    folder = push(tmp_path, {"model.onnx": sk_classifier.files["zipmap"]})
    events: list[tuple[str, str]] = []
    imported = await run_isolated(folder, ImportOptions(labels=("bear", "flat", "bull")), timeout_s=120,
                                  memory_bytes=4 * GIB, progress=lambda stage, msg: events.append((stage, msg)))
    assert (imported.framework, imported.format) == ("onnx", "onnx")
    check_contract(imported.metadata, folder)
    assert imported.metadata["class_labels"] == ["bear", "flat", "bull"]
    assert imported.metadata["runtime"]["file"] == "served.onnx" and (folder / "served.onnx").is_file()
    stages = [stage for stage, _ in events]
    assert stages[0] == "detect" and {"check", "load", "bind"} <= set(stages)


async def test_refusal_crosses_the_process_boundary(tmp_path, sk_pickle):
    folder = push(tmp_path, {"model.onnx": sk_pickle})
    with pytest.raises(InvalidArgument) as refused:
        await run_isolated(folder, ImportOptions(), timeout_s=120, memory_bytes=4 * GIB)
    assert refused.value.field == "files[model.onnx]" and "skl2onnx" in refused.value.message


async def test_the_pushed_folder_is_not_on_the_import_path(tmp_path, sk_regressor):
    """The inspector runs in the pushed folder; a module there named like one it imports is never imported
    (it would exit the child, a FailedPrecondition): the push is refused for carrying code instead."""
    folder = push(tmp_path, {**sk_regressor.files,
                             "numpy.py": b"raise SystemExit('the pushed folder was on the import path')\n"})
    with pytest.raises(InvalidArgument) as refused:
        await run_isolated(folder, ImportOptions(), timeout_s=120, memory_bytes=4 * GIB)
    assert refused.value.field == "files[numpy.py]" and "is code" in refused.value.message


async def test_deadline_kills_the_inspector(tmp_path, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    with pytest.raises(FailedPrecondition) as failed:
        await run_isolated(folder, ImportOptions(), timeout_s=0.05, memory_bytes=4 * GIB)
    assert failed.value.field == "files"
    assert failed.value.message.startswith("inspecting the model failed: the inspector exited with no answer")
    assert not _children()


async def test_killed_inspector_is_a_failed_precondition(tmp_path, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    killed = []

    def progress(stage: str, message: str) -> None:
        if not killed:
            for pid in _children():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with pytest.raises(FailedPrecondition) as failed:
        await run_isolated(folder, ImportOptions(), timeout_s=120, memory_bytes=4 * GIB, progress=progress)
    assert killed
    assert failed.value.message == "inspecting the model failed: the inspector exited with signal SIGKILL"
    assert failed.value.field == "files"


async def test_memory_limit_applies(tmp_path, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    with pytest.raises(FailedPrecondition) as failed:
        await run_isolated(folder, ImportOptions(), timeout_s=120, memory_bytes=96 << 20)
    assert failed.value.message.startswith("inspecting the model failed:") and failed.value.field == "files"


async def test_cancelling_the_caller_kills_the_inspector(tmp_path, sk_regressor):
    folder = push(tmp_path, sk_regressor.files)
    task = asyncio.create_task(run_isolated(folder, ImportOptions(), timeout_s=120, memory_bytes=4 * GIB))
    while not _children():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _children()
