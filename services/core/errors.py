"""The one domain error hierarchy. Domain code raises these; one interceptor maps them to gRPC status.

Anything else that escapes a handler is a bug: it is logged in full and answered INTERNAL with a
generic message, so internal text never reaches a caller.
"""

from __future__ import annotations

import re

import grpc


class MLMeshError(Exception):
    """Base of every error a caller is meant to see. `field` names the request field at fault."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(MLMeshError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MLMeshError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MLMeshError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MLMeshError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MLMeshError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(MLMeshError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(MLMeshError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MLMeshError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(MLMeshError):
    code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(MLMeshError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(MLMeshError):
    """A concurrent change won; the caller may retry."""

    code = grpc.StatusCode.ABORTED


class Unimplemented(MLMeshError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(MLMeshError):
    """A bug, here or in the service that answered: retrying will not help."""

    code = grpc.StatusCode.INTERNAL


class IntegrityError(FailedPrecondition):
    """Stored or received bytes do not match their recorded hash or signature."""


_BY_CODE = {cls.code: cls for cls in MLMeshError.__subclasses__()}
# A peer's bug or lost data is not "try again later": an agent told UNAVAILABLE would retry a bug.
_BY_CODE.update({grpc.StatusCode.UNKNOWN: Internal, grpc.StatusCode.DATA_LOSS: Internal})


def error_for_status(code: grpc.StatusCode, message: str) -> MLMeshError:
    """The domain error for a status a backend answered with (clients re-raise what services said)."""
    return _BY_CODE.get(code, Unavailable)(message)


_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"(),]+/)+([^\s/:'\"(),]*)")
OUTWARD_LIMIT = 300


def outward(text: object, *, limit: int = OUTWARD_LIMIT) -> str:
    """A library's or a subprocess's message as a caller may see it: its first line, server paths cut to
    their last part, at most `limit` characters. Log the whole text (with the request id) where this is used."""
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    first = _PATH.sub(lambda m: m.group(1) or "/", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"
