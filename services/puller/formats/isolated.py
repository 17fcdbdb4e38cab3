"""`run_isolated`: `inspect_model` in a throw-away subprocess, so a parser that crashes, loops or balloons on a
hostile file fails the push, not the puller.

The child gets an address-space and a CPU-time limit (set by a two-line prologue before anything else
is imported: a preexec_fn is unsafe in a process with gRPC threads), no core dumps (its working
directory is the pushed folder, and a core file there would be stored), an environment stripped to
PATH/HOME/LANG/PYTHONPATH, and `-P` so the folder it runs in is never on its import path. It is killed
at the deadline, on cancellation, and (via setpriv) when the puller dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import sys
from collections import deque
from pathlib import Path

import services
from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.processes import die_with_parent_prefix
from services.puller.formats.options import ImportedModel, ImportOptions, Progress, no_progress

log = logging.getLogger("mlmesh.puller.formats")
FAILED = "inspecting the model failed"
# argv: MEMORY_BYTES CPU_SECONDS FOLDER OPTIONS_JSON. Limits first, then the inspector's __main__.
_PROLOGUE = (
    "import resource, runpy, sys\n"
    "def cap(which, soft, hard):\n"
    "    _, top = resource.getrlimit(which)\n"
    "    limit = lambda v: v if top == resource.RLIM_INFINITY else min(v, top)\n"
    "    resource.setrlimit(which, (limit(soft), limit(hard)))\n"
    "cap(resource.RLIMIT_AS, int(sys.argv[1]), int(sys.argv[1]))\n"
    "cap(resource.RLIMIT_CPU, int(sys.argv[2]), int(sys.argv[2]) + 2)\n"
    "cap(resource.RLIMIT_CORE, 0, 0)\n"
    "sys.argv = [sys.argv[0]] + sys.argv[3:]\n"
    "runpy.run_module('services.puller.formats', run_name='__main__', alter_sys=True)\n"
)
_STDERR_TAIL = 20


def _env() -> dict[str, str]:
    root = str(Path(services.__file__).resolve().parent.parent)
    paths = [root] + [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
    }


async def run_isolated(folder: Path, options: ImportOptions, *, timeout_s: float, memory_bytes: int,
                       progress: Progress = no_progress) -> ImportedModel:
    """`inspect_model(folder, options)` in a subprocess; its refusals re-raised as the same domain errors, and a
    crash, a kill or the deadline as FailedPrecondition(field="files")."""
    options.check()
    cpu_s = 2 * math.ceil(timeout_s) + 5  # a backstop for a child the deadline somehow misses
    command = [*die_with_parent_prefix(), sys.executable, "-P", "-c", _PROLOGUE, str(int(memory_bytes)),
               str(cpu_s), str(Path(folder).absolute()), options.to_json()]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=str(folder), env=_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=_STDERR_TAIL)
    try:
        async with asyncio.timeout(timeout_s):
            stdout, _ = await asyncio.gather(process.stdout.read(), _pump(process.stderr, progress, tail))
            code = await process.wait()
    except TimeoutError:
        _kill(process)
        await process.wait()
        raise FailedPrecondition(f"{FAILED}: the inspector exited with no answer within {timeout_s:g} s (killed)",
                                 field="files") from None
    finally:
        if process.returncode is None:  # cancelled: the child goes too
            _kill(process)
            await process.wait()
    return _result(stdout, code, tail)


def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        process.kill()
    except ProcessLookupError:
        pass


async def _pump(stream: asyncio.StreamReader, progress: Progress, tail: deque[str]) -> None:
    """Progress lines to `progress`; anything else (library warnings, a traceback) kept for the log."""
    buffer = b""
    while chunk := await stream.read(65536):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            _line(line, progress, tail)
    if buffer:
        _line(buffer, progress, tail)


def _line(raw: bytes, progress: Progress, tail: deque[str]) -> None:
    text = raw.decode("utf-8", "replace").rstrip()
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("stage"), str):
        try:
            progress(event["stage"], str(event.get("message", "")))
        except Exception:  # noqa: BLE001 - a progress sink's failure must not lose the inspection
            log.exception("progress callback failed")
    elif text:
        tail.append(text[:500])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _result(stdout: bytes, code: int, tail: deque[str]) -> ImportedModel:
    answer = None
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            answer = json.loads(line)
            break
        except ValueError:
            continue
    if code != 0 or not isinstance(answer, dict):
        how = f"signal {_signal_name(-code)}" if code < 0 else f"code {code}"
        log.warning("model inspector exited with %s; stderr tail:\n%s", how, "\n".join(tail))
        raise FailedPrecondition(f"{FAILED}: the inspector exited with {how}"
                                 + ("" if code else " and no answer"), field="files")
    if answer.get("ok"):
        return ImportedModel(str(answer["framework"]), str(answer["format"]), dict(answer["metadata"]))
    error = InvalidArgument if answer.get("code") == "INVALID_ARGUMENT" else FailedPrecondition
    raise error(str(answer.get("message", FAILED)), field=answer.get("field") or "files")
