"""Failures an agent can act on: a status, what was wrong, which argument, and what to do next.

gRPC errors keep the backend's status and message (backends never send internal text: unknown errors
arrive as INTERNAL with a request id) and name the tool argument behind the backend's field.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from pydantic import ValidationError

from services.core.grpc.interceptor import ERROR_FIELD_KEY

_NEXT = {
    "INVALID_ARGUMENT": "Correct that argument and call again.",
    "NOT_FOUND": "Check the name or id (the list tools show what exists).",
    "ALREADY_EXISTS": "It exists already; use it or pick another name.",
    "FAILED_PRECONDITION": "The current state does not allow this; change the state first.",
    "RESOURCE_EXHAUSTED": "The service is at capacity; retry later with backoff.",
    "UNAVAILABLE": "The target is halted or unreachable; check data.ml.list_serving or retry later.",
    "PERMISSION_DENIED": "The token lacks the scope for this; ask for a token with it.",
    "UNAUTHENTICATED": "The credentials were refused; obtain a fresh token.",
    "DEADLINE_EXCEEDED": "It took too long; retry, or check data.ml.operation_status.",
    "CANCELLED": "It was cancelled.",
    "ABORTED": "A concurrent change won; retry.",
    "UNIMPLEMENTED": "This is not available in this deployment.",
    "SKILL_FAILED": "Fix what the failing step needs (its model, session or inputs) and run it again.",
}


class ToolFailure(Exception):
    """A tool call that failed in a way the agent is told about (never a stack trace)."""

    def __init__(self, code: str, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.argument = argument

    def text(self) -> str:
        where = f" (argument `{self.argument}`)" if self.argument else ""
        message = self.message.rstrip()
        hint = _NEXT.get(self.code)
        if hint:
            message = f"{message}{'' if message.endswith(('.', '!', '?')) else '.'} {hint}"
        return f"{self.code}{where}: {message}"

    def details(self) -> dict:
        return {"code": self.code, "message": self.message, "argument": self.argument}


def argument_for(field: str | None, renames: Mapping[str, str]) -> str | None:
    """The tool argument behind a backend field. `renames` maps a field (or a prefix of one) to the
    argument: {"ref": "skill"} turns `ref` into `skill`; {"batching": ""} flattens `batching.max_queue_size`
    to `max_queue_size`, for tools whose arguments are a message's fields spread out."""
    if not field:
        return None
    for old, new in renames.items():
        if field == old:
            return new or None
        if field.startswith(old) and field[len(old)] in ".[":
            rest = field[len(old):]
            return new + rest if new else rest.lstrip(".")
    return field


def from_rpc(exc: grpc.aio.AioRpcError, service: str, address: str, renames: Mapping[str, str]) -> ToolFailure:
    code = exc.code().name
    details = exc.details() or code
    field = dict(exc.trailing_metadata() or ()).get(ERROR_FIELD_KEY)
    if field and details.startswith(f"{field}: "):
        details = details[len(field) + 2:]
    if exc.code() == grpc.StatusCode.UNAVAILABLE and not field and _is_connect_failure(details):
        details = f"the {service} service at {address} is not reachable"
    return ToolFailure(code, details, argument_for(field, renames))


def from_operation_error(code: str, message: str, field: str, renames: Mapping[str, str]) -> ToolFailure:
    return ToolFailure(code or "UNKNOWN", message or "the operation failed", argument_for(field, renames))


def from_validation(exc: ValidationError, allowed: list[str]) -> ToolFailure:
    """The first problem pydantic found, named by its argument path (`rows[0][2]`)."""
    error = exc.errors()[0]
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" not in part and "(" not in part:  # union member tags such as 'list[float]' are not arguments
            path += f".{part}" if path else part
    if error["type"] == "extra_forbidden":
        return ToolFailure("INVALID_ARGUMENT", f"unknown argument; this tool takes {', '.join(allowed)}", path)
    return ToolFailure("INVALID_ARGUMENT", error["msg"], path or None)


def _is_connect_failure(details: str) -> bool:
    lowered = details.lower()
    return any(s in lowered for s in ("failed to connect", "connection refused", "connect failed", "dns resolution"))
