"""`python -m services.puller.formats FOLDER OPTIONS_JSON`: inspect a pushed folder in this process.

stdout carries exactly one JSON line, the answer: {"ok": true, "framework", "format", "metadata"} or
{"ok": false, "code": "INVALID_ARGUMENT" | "FAILED_PRECONDITION", "message", "field"}. Progress goes to
stderr as JSON lines {"stage", "message"}. Libraries print to stdout too (LightGBM's warnings, the ONNX
converters), so file descriptor 1 is pointed at stderr for the run and the answer is written to a copy
of the original stdout.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from services.core.errors import InvalidArgument, MLMeshError

FAILED = "inspecting the model failed"


def _answer(exc: BaseException) -> dict:
    if isinstance(exc, InvalidArgument):
        return {"ok": False, "code": "INVALID_ARGUMENT", "message": exc.message, "field": exc.field}
    if isinstance(exc, MLMeshError):
        return {"ok": False, "code": "FAILED_PRECONDITION", "message": exc.message, "field": exc.field}
    if isinstance(exc, MemoryError):
        return {"ok": False, "code": "FAILED_PRECONDITION", "field": "files",
                "message": f"{FAILED}: it needs more memory than the inspector may use"}
    return {"ok": False, "code": "FAILED_PRECONDITION", "field": "files",
            "message": f"{FAILED}: the inspector raised {type(exc).__name__}"}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m services.puller.formats FOLDER OPTIONS_JSON", file=sys.stderr)
        return 2
    answer_fd = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)

    def progress(stage: str, message: str) -> None:
        print(json.dumps({"stage": stage, "message": message}), file=sys.stderr, flush=True)

    try:
        from services.puller.formats.inspector import inspect_model
        from services.puller.formats.options import ImportOptions

        imported = inspect_model(Path(argv[0]), ImportOptions.from_json(argv[1]), progress)
        answer = {"ok": True, **imported.to_dict()}
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an answer; the parent decides
        if not isinstance(exc, MLMeshError):
            traceback.print_exc(file=sys.stderr)
        answer = _answer(exc)
    os.write(answer_fd, (json.dumps(answer, allow_nan=False) + "\n").encode())
    os.close(answer_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
