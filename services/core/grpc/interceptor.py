"""The one server interceptor: request id, authentication, scopes, error mapping and access log.

It sits on the serving hot path, so the wrapped handler is built once per method and cached; the
per-call work is a metadata scan, a cached token lookup and one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

import grpc

from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenVerifier
from services.core.errors import MLMeshError, PermissionDenied, Unauthenticated
from services.core.observability.grpc_tracing import TRACEPARENT, TRACESTATE, ServerTracing
from services.core.observability.metrics import MethodMetrics, RpcMetrics

REQUEST_ID_KEY = "x-request-id"
ERROR_FIELD_KEY = "mlmesh-error-field"
OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")

access_log = logging.getLogger("mlmesh.access")
log = logging.getLogger("mlmesh.grpc")

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("mlmesh_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the call being served, so outgoing calls and logs can carry it."""
    return _REQUEST_ID.get()


@contextlib.contextmanager
def request_id_bound(request_id: str):
    """Makes `request_id` the current one for work that is not a gRPC call (the gateway's tool calls)."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        _REQUEST_ID.reset(token)


# Ids made here: 32 hex digits, a random per-process prefix and a counter. Unique, not secret: uuid4's
# urandom call per request cost more than the rest of the request id handling together.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _clean_request_id(value: str | None) -> str:
    # A caller's id goes into logs verbatim: accept only short, printable, space-free ids.
    if value and len(value) <= 128 and value.isprintable() and " " not in value:
        return value
    return new_request_id()


class MeshInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier | None,
        method_scopes: Mapping[str, str] | None = None,
        open_methods: Iterable[str] = OPEN_METHODS,
        rpc_metrics: RpcMetrics | None = None,
        tracing: ServerTracing | None = None,
        quiet_methods: Iterable[str] = (),
    ) -> None:
        self._verifier = verifier
        self._quiet = frozenset(quiet_methods)  # their successful calls get no access log line
        self._tracing = tracing or ServerTracing.of_process()  # the process's tracer, read once
        self._rpc_metrics = rpc_metrics
        self._scopes = dict(method_scopes or {})
        self._open = tuple(open_methods)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # unknown method: gRPC answers UNIMPLEMENTED; not cached, names are caller-chosen
            metrics = self._rpc_metrics.for_method(method) if self._rpc_metrics is not None else None
            is_open = method.startswith(self._open)
            tracing = None if is_open else self._tracing   # health and reflection probes: no spans
            wrapped = self._wrapped[method] = _Gate(method, self._scopes.get(method), is_open, self._verifier,
                                                    metrics, tracing, method not in self._quiet).wrap(handler)
        return wrapped


class _Gate:
    """Everything the interceptor does for one method."""

    __slots__ = ("method", "scope", "verifier", "metrics", "tracing", "log_ok")

    def __init__(self, method: str, scope: str | None, is_open: bool, verifier: TokenVerifier | None,
                 metrics: MethodMetrics | None = None, tracing: ServerTracing | None = None,
                 log_ok: bool = True) -> None:
        self.log_ok = log_ok  # False: only failed calls get an access log line (a high-rate method)
        self.method = method
        self.scope = scope
        self.verifier = None if is_open else verifier
        self.metrics = metrics  # this method's Prometheus children, bound once
        self.tracing = tracing or ServerTracing(None, enabled=False)

    def wrap(self, h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        ser = {"request_deserializer": h.request_deserializer, "response_serializer": h.response_serializer}
        if h.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._coroutine(h.unary_unary), **ser)
        if h.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._streaming(h.unary_stream), **ser)
        if h.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._coroutine(h.stream_unary), **ser)
        return grpc.stream_stream_rpc_method_handler(self._streaming(h.stream_stream), **ser)

    def _streaming(self, behavior: Callable) -> Callable:
        # gRPC picks how to drive a streaming handler by inspecting it: a coroutine writes with
        # context.write, anything else yields. The wrapper keeps the inner kind.
        if inspect.iscoroutinefunction(behavior):
            return self._coroutine(behavior)
        return self._generator(behavior)

    def _coroutine(self, behavior: Callable[..., Awaitable]) -> Callable:
        async def handle(request, context):
            start, rid, principal, code = time.perf_counter(), "-", None, grpc.StatusCode.OK
            tokens = traced = None
            peer = context.peer()  # now, while the call is alive: see _log
            try:
                rid, auth, carrier = _scan(context)
                traced = self.tracing.begin(self.method, carrier)
                principal = self._authenticate(auth)
                self._authorize(principal)
                tokens = set_principal(principal), _REQUEST_ID.set(rid)
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                code = _keep_request_id(context, rid)
                return result
            except BaseException as exc:
                code = None  # the log reads the status that was sent
                await self._fail(exc, context, rid)
            finally:
                self._finish(start, code, principal, rid, context, tokens, traced, peer)

        return handle

    def _generator(self, behavior: Callable) -> Callable:
        async def handle(request, context):
            start, rid, principal, code = time.perf_counter(), "-", None, grpc.StatusCode.OK
            tokens = traced = None
            peer = context.peer()  # now, while the call is alive: see _log
            try:
                rid, auth, carrier = _scan(context)
                traced = self.tracing.begin(self.method, carrier)
                principal = self._authenticate(auth)
                self._authorize(principal)
                tokens = set_principal(principal), _REQUEST_ID.set(rid)
                responses = behavior(request, context)  # an async generator, or a plain iterable
                if hasattr(responses, "__aiter__"):
                    async with contextlib.aclosing(responses):  # close it now when the caller goes away
                        async for item in responses:
                            yield item
                else:
                    for item in responses:
                        yield item
                code = _keep_request_id(context, rid)
            except GeneratorExit:
                # Closed after its call ended (the caller went away): the context is not to be read again.
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException as exc:
                code = None  # the log reads the status that was sent
                await self._fail(exc, context, rid)
            finally:
                self._finish(start, code, principal, rid, context, tokens, traced, peer)

        return handle

    def _finish(self, start: float, code, principal: Principal | None, rid: str, context, tokens, traced,
                peer: str) -> None:
        _reset(tokens)
        self._log(start, code, principal, rid, context, peer)
        if traced is not None:  # after the access log, so its line carries the trace id
            self.tracing.end(traced, code or _sent_code(context))

    def _authenticate(self, auth: str | None) -> Principal | None:
        """The verified caller; raises when the call may not proceed."""
        if self.verifier is None:
            return None
        if not auth:
            raise Unauthenticated("missing bearer token")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        return self.verifier.verify(token.strip())

    def _authorize(self, principal: Principal | None) -> None:
        # Kept apart from _authenticate so a refused caller is still named in the access log.
        if self.scope is not None and principal is not None and self.scope not in principal.scopes:
            raise PermissionDenied(f"missing scope {self.scope!r}")

    async def _fail(self, exc: BaseException, context, rid: str) -> None:
        """Map `exc` to a status and abort with it (abort raises AbortError); re-raise what is not ours."""
        if isinstance(exc, grpc.aio.AbortError):
            raise exc  # the handler aborted on its own; status and details already sent
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            raise exc  # the caller went away or the deadline passed
        trailing = [(REQUEST_ID_KEY, rid)]
        if isinstance(exc, MLMeshError):
            code, details = exc.code, str(exc)
            if exc.field:
                trailing.append((ERROR_FIELD_KEY, exc.field))
        elif isinstance(exc, NotImplementedError):
            code, details = grpc.StatusCode.UNIMPLEMENTED, "method not implemented"
        elif isinstance(exc, Exception):
            log.error("unhandled error in %s (request id %s)", self.method, rid, exc_info=exc)
            code, details = grpc.StatusCode.INTERNAL, f"internal error (request id {rid})"
        else:
            raise exc  # KeyboardInterrupt, SystemExit: not ours to swallow
        await context.abort(code, details, trailing_metadata=tuple(trailing))
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def _log(self, start: float, code, principal: Principal | None, rid: str, context, peer: str) -> None:
        # `peer` was read when the call began: a streaming handler's `finally` can run after its call is gone
        # (a watcher that went away), and context.peer() on a finished call crashed the registry (SIGSEGV in
        # cygrpc, faulthandler's stack ending here).
        if self.metrics is not None:
            if code is None:  # _fail re-raised: read what was sent
                code = _sent_code(context)
            self.metrics.observe(code, time.perf_counter() - start)
        if code is grpc.StatusCode.OK and not self.log_ok:
            return  # ~35 µs a line: at thousands of inference calls a second, metrics and traces count them
        if not access_log.isEnabledFor(logging.INFO):
            return
        if code is None:  # _fail re-raised: read what was sent
            code = _sent_code(context)
        access_log.info(
            "%s %s %.1fms sub=%s rid=%s peer=%s",
            self.method, code.name, (time.perf_counter() - start) * 1000.0,
            principal.subject if principal else "-", rid, peer,
            # the call's contextvars are reset by now: the JSON log fields come from here
            extra={"request_id": rid, "subject": principal.subject if principal else None},
        )


def _scan(context) -> tuple[str, str | None, dict[str, str] | None]:
    """One pass over the metadata: the request id (made when absent, and set as trailing metadata), the
    authorization value, and the trace context headers (None when neither came)."""
    rid = auth = carrier = None
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY:
            rid = value
        elif key == "authorization":
            auth = value
        elif key == TRACEPARENT or key == TRACESTATE:
            if carrier is None:
                carrier = {}
            carrier[key] = value
    rid = _clean_request_id(rid)
    context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
    return rid, auth, carrier


def _sent_code(context) -> grpc.StatusCode:
    try:
        code = context.code()
        if code is not None:
            return code
        # No status was sent: the call was cancelled under the handler, by the caller or its deadline.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    except Exception:  # noqa: BLE001 - the log line must not fail the call
        return grpc.StatusCode.UNKNOWN


def _keep_request_id(context, rid: str) -> grpc.StatusCode:
    """Re-add the request id when the handler replaced the trailing metadata; the call's status."""
    trailing = context.trailing_metadata() or ()
    if not any(k == REQUEST_ID_KEY for k, _ in trailing):
        context.set_trailing_metadata(tuple(trailing) + ((REQUEST_ID_KEY, rid),))
    return context.code() or grpc.StatusCode.OK


def _reset(tokens) -> None:
    if tokens is None:
        return
    try:
        reset_principal(tokens[0])
        _REQUEST_ID.reset(tokens[1])
    except ValueError:
        pass  # a generator closed from another context; that context dies with its task anyway
