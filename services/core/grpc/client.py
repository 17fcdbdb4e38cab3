"""Channels that call another mesh service with a token minted for it, and status -> domain error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import NoReturn

import grpc

from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.errors import error_for_status
from services.core.grpc.interceptor import ERROR_FIELD_KEY, REQUEST_ID_KEY, current_request_id
from services.core.observability.grpc_tracing import inject_metadata
from services.core.settings import AuthSettings, MeshSettings


class TokenSource:
    """One cached token for (subject, audience, scopes); re-minted when a fifth of its life is left,
    so a call never leaves with a token about to expire and no call pays for a mint."""

    def __init__(self, issuer: TokenIssuer, audience: str, subject: str, scopes: Iterable[str],
                 on_behalf_of: str | None = None) -> None:
        self._issuer = issuer
        self._args = (subject, audience, frozenset(scopes))
        self._obo = on_behalf_of
        self._token = ""
        self._refresh_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        now = time.monotonic()
        if now < self._refresh_at:
            return self._token
        with self._lock:
            if now >= self._refresh_at:
                subject, audience, scopes = self._args
                self._token = self._issuer.mint(subject, audience, scopes, on_behalf_of=self._obo)
                self._refresh_at = now + self._issuer.ttl_s * 0.8
        return self._token


class _Bearer:
    """Adds `authorization` (unless the caller set one), the current request id and the current trace
    context (W3C `traceparent`) to every call."""

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if "authorization" not in metadata:
            metadata["authorization"] = f"Bearer {self._tokens.token()}"
        rid = current_request_id()
        if rid and REQUEST_ID_KEY not in metadata:
            metadata[REQUEST_ID_KEY] = rid  # one id across services for one piece of work
        inject_metadata(metadata)  # the called service's spans join this call's trace
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the FIRST call kind it is an instance of (an elif chain),
# so one class inheriting all four would only ever see unary-unary calls: one class per kind.
class _BearerUU(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _BearerUS(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _BearerSU(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _BearerSS(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def connect(
    address: str,
    audience: str,
    issuer: TokenIssuer,
    subject: str,
    scopes: Iterable[str],
    on_behalf_of: str | None = None,
    *,
    max_message_bytes: int | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> grpc.aio.Channel:
    """An insecure channel to `address` whose calls carry a token for `audience` (the called service).

    Call it inside the running event loop (grpc.aio binds a channel to the loop it is made in).
    `on_behalf_of` records an agent's subject in the token (`obo`) for audit; its token never travels.
    """
    opts = list(options)
    if max_message_bytes:
        opts += [("grpc.max_send_message_length", max_message_bytes),
                 ("grpc.max_receive_message_length", max_message_bytes)]
    tokens = TokenSource(issuer, audience, subject, scopes, on_behalf_of)
    interceptors = [cls(tokens) for cls in (_BearerUU, _BearerUS, _BearerSU, _BearerSS)]
    return grpc.aio.insecure_channel(address, options=opts, interceptors=interceptors)


def raise_domain_error(exc: grpc.aio.AioRpcError) -> NoReturn:
    """Re-raise what another service answered as the domain error it started as (field kept)."""
    details = exc.details() or exc.code().name
    field = None
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_FIELD_KEY:
            field = value
    if field and details.startswith(f"{field}: "):
        details = details[len(field) + 2:]
    err = error_for_status(exc.code(), details)
    err.field = field
    raise err from exc


def operator_token(mesh: MeshSettings, auth: AuthSettings, audience: str, subject: str = "operator") -> str:
    """A token with every scope, for the `mlmesh` command and tests."""
    return TokenIssuer.from_settings(mesh, auth).mint(subject, audience, ALL_SCOPES)
