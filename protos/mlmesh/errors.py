"""What a failed call raises: one exception class per gRPC status a caller acts on, with the request field
at fault when the service named one (the mesh sends it as `mlmesh-error-field` trailing metadata)."""

from __future__ import annotations

import grpc

FIELD_KEY = "mlmesh-error-field"


class MeshError(Exception):
    """A call the mesh refused or could not answer. `code` is the gRPC status, `field` the request field."""

    default_code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message, self.code, self.field = message, code or self.default_code, field


class InvalidArgument(MeshError):
    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MeshError):
    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MeshError):
    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(MeshError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(MeshError):
    default_code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(MeshError):
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MeshError):
    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(MeshError):
    """Safe to retry later; idempotent calls are retried for you within their deadline."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MeshError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class OperationFailed(MeshError):
    """Long work (a push, a compile) ended FAILED or CANCELLED; `operation_id` says which."""

    def __init__(self, message: str, *, code: grpc.StatusCode, field: str = "", operation_id: str = "") -> None:
        super().__init__(message, code=code, field=field)
        self.operation_id = operation_id


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument, grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists, grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated, grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted, grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(exc: grpc.RpcError) -> MeshError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or code.name
    field = ""
    for key, value in (exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None) or ():
        if key == FIELD_KEY:
            field = value
    if field and details.startswith(f"{field}: "):
        details = details[len(field) + 2:]
    return _BY_CODE.get(code, MeshError)(details, code=code, field=field)
