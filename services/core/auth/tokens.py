"""Mesh tokens: ES256 JWTs whose audience is the called service, minted and verified here."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from services.core.auth.keys import issuer_key_path, key_id, load_or_create_issuer_key
from services.core.auth.principal import Principal
from services.core.errors import InvalidArgument, Unauthenticated
from services.core.settings import AuthSettings, MeshSettings

ALGORITHM = "ES256"
_REQUIRED = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]


class TokenIssuer:
    """Mints tokens with the mesh issuer key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, issuer: str, ttl_s: int) -> None:
        self._key = private_key
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.kid = key_id(private_key.public_key())

    @classmethod
    def from_settings(cls, mesh: MeshSettings, auth: AuthSettings) -> "TokenIssuer":
        return cls(load_or_create_issuer_key(issuer_key_path(mesh, auth)), auth.issuer, auth.token_ttl_s)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def mint(
        self,
        subject: str,
        audience: str | list[str],
        scopes: Iterable[str],
        ttl_s: int | None = None,
        on_behalf_of: str | None = None,
    ) -> str:
        """`audience`: one service, or a list (the web console calls several; each accepts a list naming it)."""
        if not subject:
            raise InvalidArgument("a token needs a subject", field="subject")
        if not audience or (isinstance(audience, list) and not all(audience)):
            raise InvalidArgument("a token needs an audience", field="audience")
        if isinstance(audience, list) and len(audience) == 1:
            audience = audience[0]
        scope_set = set(scopes)
        if any(not s or any(c.isspace() for c in s) for s in scope_set):
            raise InvalidArgument("scopes must be non-empty and without spaces", field="scopes")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "scope": " ".join(sorted(scope_set)),
            "iat": now,
            "nbf": now,
            "exp": now + (self.ttl_s if ttl_s is None else ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if on_behalf_of:
            claims["obo"] = on_behalf_of  # the agent a gateway acts for, recorded for audit only
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


class TokenVerifier:
    """Verifies tokens for one audience. Verified tokens are cached until they expire, because an
    ECDSA verify (~100 µs) on every call would tax the serving hot path."""

    def __init__(
        self,
        public_keys: Mapping[str, ec.EllipticCurvePublicKey] | ec.EllipticCurvePublicKey,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
        cache_size: int = 4096,
    ) -> None:
        if isinstance(public_keys, ec.EllipticCurvePublicKey):
            public_keys = {key_id(public_keys): public_keys}
        if not public_keys:
            raise InvalidArgument("a verifier needs at least one public key", field="public_keys")
        self._keys = dict(public_keys)
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._lock = threading.Lock()  # the MCP gateway may verify from worker threads

    @classmethod
    def from_settings(cls, mesh: MeshSettings, auth: AuthSettings, audience: str) -> "TokenVerifier":
        key = load_or_create_issuer_key(issuer_key_path(mesh, auth)).public_key()
        return cls(key, auth.issuer, audience, auth.clock_skew_s)

    def verify(self, token: str) -> Principal:
        now = time.time()
        with self._lock:
            principal = self._cache.get(token)
            if principal is not None:
                if now <= principal.expires_at + self.leeway_s:
                    self._cache.move_to_end(token)
                    return principal
                del self._cache[token]
                raise Unauthenticated("token expired")
        principal = self._verify_uncached(token)
        with self._lock:
            self._cache[token] = principal
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _verify_uncached(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token") from None
        alg = header.get("alg")
        if not alg or str(alg).lower() == "none":
            raise Unauthenticated("unsigned token refused")
        if alg != ALGORITHM:
            raise Unauthenticated(f"token algorithm {alg!r} refused")
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        elif kid in self._keys:
            key = self._keys[kid]
        else:
            raise Unauthenticated("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway_s,
                # The audience is checked below by exact equality; PyJWT's check is not ours to rely on.
                options={"verify_aud": False, "require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not yet valid") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks claim {exc.claim!r}") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token") from None
        aud = claims["aud"]
        if not (aud == self.audience if isinstance(aud, str) else isinstance(aud, list) and self.audience in aud):
            raise Unauthenticated("token audience mismatch")
        scope = claims.get("scope", "")
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise Unauthenticated("malformed token")
        obo = claims.get("obo")
        return Principal(
            subject=claims["sub"],
            scopes=frozenset(scope.split()),
            audience=self.audience,
            token_id=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            on_behalf_of=obo if isinstance(obo, str) and obo else None,
        )
