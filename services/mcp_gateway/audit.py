"""One audit record per tool call: who, which tool, a hash of the arguments, the outcome and the latency.

Arguments are hashed, not stored (they may carry data the audit trail must not keep); the hash is the
SHA-256 of their canonical JSON, so equal arguments give equal hashes across calls and processes.
Records go to the `mlmesh.audit` logger and, one JSON object per line, to the audit file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.core.canonical import canonical_json, sha256_hex

log = logging.getLogger("mlmesh.audit")


def argument_hash(arguments: Any) -> str:
    try:
        text = canonical_json(arguments)
    except ValueError:  # NaN/Infinity: not JSON, but the call is still audited
        text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_hex(text)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    subject: str            # the agent (the token's `sub`); "-" when none was verified
    tool: str               # canonical (dotted) name
    called_as: str          # the name the client used (data.ml.x or data_ml_x)
    args_sha256: str
    outcome: str            # "ok", "cancelled", or the failure's status name (INVALID_ARGUMENT, ...)
    latency_ms: float
    request_id: str         # also sent to the backends, so their access logs line up with this record
    transport: str          # "http" or "stdio"
    time: float


class AuditTrail:
    def __init__(self, path: Path | None, on_record: Callable[[AuditRecord], None] | None = None) -> None:
        self.on_record = on_record  # e.g. the tool-call metrics: every call is audited exactly once
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: each record is one write(2), so concurrent gateways never interleave lines.
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.path = path

    def record(self, **fields: Any) -> AuditRecord:
        record = AuditRecord(time=time.time(), **fields)
        line = json.dumps(asdict(record), separators=(",", ":"), ensure_ascii=False)
        log.info("%s", line)
        if self._fd is not None:
            os.write(self._fd, (line + "\n").encode())
        if self.on_record is not None:
            self.on_record(record)
        return record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
