"""Agent tokens: ES256 JWTs whose `aud` is exactly the canonical URI (RFC 8707), checked against the
local mesh key or an issuer's JWKS.

The SDK's own resource check (`AuthSettings.validate_token_resource`) compares URLs after
normalising them (case, default port, a trailing slash), so it is not used: equality here is exact.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.server.auth.provider import AccessToken

from services.core.auth.principal import Principal
from services.core.auth.tokens import TokenVerifier
from services.core.errors import Unauthenticated

log = logging.getLogger("mlmesh.mcp.auth")
_JWKS_REFRESH_S = 60.0  # an unknown key id refetches the JWKS at most this often


class AgentTokenVerifier:
    """Verifies agent bearer tokens for one resource; also the SDK's `TokenVerifier` protocol."""

    def __init__(self, canonical_uri: str, issuer: str, *, public_key: ec.EllipticCurvePublicKey | None = None,
                 jwks_url: str = "", leeway_s: int = 30) -> None:
        if not (public_key or jwks_url):
            raise ValueError("an agent token verifier needs the mesh key or a JWKS URL")
        self.canonical_uri = canonical_uri
        self.issuer = issuer
        self._leeway_s = leeway_s
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=False) if jwks_url else None
        self._lock = threading.Lock()
        self._fetched_at = 0.0
        self._inner = TokenVerifier(public_key, issuer, canonical_uri, leeway_s) if public_key else self._from_jwks()

    def verify(self, token: str) -> Principal:
        """The agent behind `token`, or Unauthenticated saying what is wrong with it."""
        try:
            principal = self._inner.verify(token)
        except Unauthenticated as exc:
            if self._jwks is None or str(exc) != "unknown signing key" or not self._refresh():
                raise
            principal = self._inner.verify(token)  # the issuer rotated its keys: one retry with the new set
        # The mesh verifier also accepts a list `aud` containing us; a token for several resources can be
        # replayed by each of them, so only a string (or a one-element list) equal byte for byte passes.
        aud = _claims(token).get("aud")
        if aud != self.canonical_uri and aud != [self.canonical_uri]:
            raise Unauthenticated("token audience mismatch")
        return principal

    async def verify_token(self, token: str) -> AccessToken | None:
        """The `mcp.server.auth.provider.TokenVerifier` protocol."""
        try:
            return access_token(token, self.verify(token))
        except Unauthenticated:
            return None

    def _from_jwks(self) -> TokenVerifier:
        keys = {}
        for jwk in self._jwks.get_signing_keys(refresh=True):
            if isinstance(jwk.key, ec.EllipticCurvePublicKey) and isinstance(jwk.key.curve, ec.SECP256R1):
                keys[jwk.key_id] = jwk.key
        if not keys:
            raise Unauthenticated("the issuer's JWKS has no ES256 (P-256) signing key")
        self._fetched_at = time.monotonic()
        return TokenVerifier(keys, self.issuer, self.canonical_uri, self._leeway_s)

    def _refresh(self) -> bool:
        with self._lock:
            if time.monotonic() - self._fetched_at < _JWKS_REFRESH_S:
                return False
            try:
                self._inner = self._from_jwks()
            except (jwt.PyJWKClientError, Unauthenticated) as exc:
                log.warning("JWKS refresh failed: %s", exc)
                self._fetched_at = time.monotonic()
                return False
            return True


def _claims(token: str) -> dict:
    """The payload of a token that has just verified (so it is well formed): cheaper than a second decode."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def access_token(token: str, principal: Principal) -> AccessToken:
    """What the SDK keeps for a verified caller (its session binding reads client_id/subject)."""
    return AccessToken(token=token, client_id=principal.subject, scopes=sorted(principal.scopes),
                       expires_at=int(principal.expires_at), resource=principal.audience, subject=principal.subject)
