"""Issuer key, tokens, principal and policy."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import stat
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.core.auth import keys
from services.core.auth import tokens as tokens_mod
from services.core.auth.keys import issuer_key_path, key_id, load_or_create_issuer_key, public_jwk
from services.core.auth.policy import ALL_SCOPES, SKILLS_PUBLISH, policy_check
from services.core.auth.principal import Principal, current_principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated
from services.core.settings import AuthSettings, MeshSettings


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def issuer(key) -> TokenIssuer:
    return TokenIssuer(key, "mlmesh", 600)


@pytest.fixture
def verifier(key) -> TokenVerifier:
    return TokenVerifier(key.public_key(), "mlmesh", "registry", leeway_s=5)


def _claims(**over):
    now = int(time.time())
    claims = {"iss": "mlmesh", "sub": "svc", "aud": "registry", "scope": "registry.read",
              "iat": now, "nbf": now, "exp": now + 600, "jti": "j1"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key, claims, kid=None, alg="ES256"):
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid or key_id(key.public_key())})


# --- keys -----------------------------------------------------------------------------------------

def test_key_created_private_and_reused(tmp_path):
    path = tmp_path / "home" / "keys" / "issuer.pem"
    first = load_or_create_issuer_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert isinstance(first.curve, ec.SECP256R1)
    again = load_or_create_issuer_key(path)
    assert again.private_numbers() == first.private_numbers()
    assert [p.name for p in path.parent.iterdir()] == ["issuer.pem"]  # no temp files left


def _kid_of(path_str: str, start) -> str:
    start.wait()
    from pathlib import Path
    return key_id(load_or_create_issuer_key(Path(path_str)).public_key())


def test_concurrent_creation_race_ends_with_one_key(tmp_path):
    path = tmp_path / "keys" / "issuer.pem"
    # Threads and forked processes released together all create at once; everybody must end up
    # with the winner's key.
    start = threading.Barrier(8)
    kids: list[str] = []
    threads = [threading.Thread(target=lambda: kids.append(_kid_of(str(path), start))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1 and len(kids) == 8

    path2 = tmp_path / "keys2" / "issuer.pem"
    ctx = multiprocessing.get_context("fork")
    gate = ctx.Barrier(6)
    out = ctx.SimpleQueue()
    procs = [ctx.Process(target=lambda: out.put(_kid_of(str(path2), gate))) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * 6
    proc_kids = {out.get() for _ in procs}
    assert proc_kids == {key_id(load_or_create_issuer_key(path2).public_key())}


def test_corrupt_key_file_is_refused(tmp_path):
    path = tmp_path / "issuer.pem"
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(FailedPrecondition, match="not a PEM private key"):
        keys._load(path, attempts=1)


def test_public_jwk_thumbprint(key):
    jwk = public_jwk(key.public_key())
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256" and jwk["alg"] == "ES256" and jwk["use"] == "sig"
    required = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(required, sort_keys=True, separators=(",", ":")).encode()).digest()
    assert jwk["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    # The JWK is usable as a verification key by a stock JWT library.
    pub = jwt.PyJWK(jwk).key
    assert pub.public_numbers() == key.public_key().public_numbers()


def test_issuer_key_path(tmp_path):
    mesh = MeshSettings(home=tmp_path)
    assert issuer_key_path(mesh, AuthSettings()) == tmp_path / "keys" / "issuer.pem"
    assert issuer_key_path(mesh, AuthSettings(issuer_key_file=tmp_path / "k.pem")) == tmp_path / "k.pem"


# --- tokens ---------------------------------------------------------------------------------------

def test_mint_and_verify(issuer, verifier):
    token = issuer.mint("gateway", "registry", ["registry.read", "skills.run"], on_behalf_of="agent-7")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == issuer.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "registry.read skills.run" and claims["obo"] == "agent-7"
    assert {"iss", "sub", "aud", "iat", "nbf", "exp", "jti"} <= claims.keys()
    p = verifier.verify(token)
    assert p.subject == "gateway" and p.audience == "registry" and p.on_behalf_of == "agent-7"
    assert p.scopes == frozenset({"registry.read", "skills.run"})
    assert p.token_id == claims["jti"] and p.expires_at == claims["exp"]
    assert "obo" not in jwt.decode(issuer.mint("a", "registry", []), options={"verify_signature": False})


def test_mint_rejects_bad_input(issuer):
    with pytest.raises(InvalidArgument):
        issuer.mint("", "registry", [])
    with pytest.raises(InvalidArgument):
        issuer.mint("a", "registry", ["two words"])


def _bad_tokens(key):
    other = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    none_token = jwt.encode(_claims(), None, algorithm="none")
    hs = jwt.encode(_claims(), "a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256")
    return {
        "expired": (_sign(key, _claims(iat=now - 900, nbf=now - 900, exp=now - 60)), "token expired"),
        "not yet valid": (_sign(key, _claims(nbf=now + 600, exp=now + 900)), "token not yet valid"),
        "wrong audience": (_sign(key, _claims(aud="serving")), "token audience mismatch"),
        "audience prefix": (_sign(key, _claims(aud="registr")), "token audience mismatch"),
        "audience longer": (_sign(key, _claims(aud="registry/admin")), "token audience mismatch"),
        "audience list without it": (_sign(key, _claims(aud=["serving", "registry2"])), "token audience mismatch"),
        "wrong issuer": (_sign(key, _claims(iss="evil")), "wrong issuer"),
        "bad signature": (_sign(other, _claims(), kid=key_id(key.public_key())), "bad signature"),
        "unknown key": (_sign(other, _claims()), "unknown signing key"),
        "alg none": (none_token, "unsigned token refused"),
        "hs256": (hs, "token algorithm 'HS256' refused"),
        "garbage": ("not.a.jwt", "malformed token"),
        "missing jti": (_sign(key, _claims(jti=None)), "token lacks claim 'jti'"),
    }


@pytest.mark.parametrize("case", list(_bad_tokens(ec.generate_private_key(ec.SECP256R1())).keys()))
def test_bad_tokens_refused(key, verifier, case):
    token, reason = _bad_tokens(key)[case]
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    assert str(info.value) == reason


def test_audience_list_with_exact_value_accepted(key, verifier):
    assert verifier.verify(_sign(key, _claims(aud=["serving", "registry"]))).audience == "registry"


def test_verification_is_cached_until_expiry(key, verifier, monkeypatch):
    token = _sign(key, _claims())
    first = verifier.verify(token)
    calls = []
    monkeypatch.setattr(tokens_mod.jwt, "decode", lambda *a, **k: calls.append(1))
    assert verifier.verify(token) is first and not calls
    later = first.expires_at + verifier.leeway_s + 1
    monkeypatch.setattr(tokens_mod.time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="token expired"):
        verifier.verify(token)


def test_cache_is_bounded(key):
    v = TokenVerifier({key_id(key.public_key()): key.public_key()}, "mlmesh", "registry", cache_size=2)
    for i in range(5):
        v.verify(_sign(key, _claims(jti=f"j{i}")))
    assert len(v._cache) == 2


def test_from_settings_share_the_home_key(tmp_path):
    mesh, auth = MeshSettings(home=tmp_path), AuthSettings()
    token = TokenIssuer.from_settings(mesh, auth).mint("op", "compiler", ALL_SCOPES)
    principal = TokenVerifier.from_settings(mesh, auth, "compiler").verify(token)
    assert principal.scopes == ALL_SCOPES
    with pytest.raises(Unauthenticated, match="audience"):
        TokenVerifier.from_settings(mesh, auth, "registry").verify(token)


# --- principal and policy -------------------------------------------------------------------------

def _principal(*scopes):
    return Principal("alice", frozenset(scopes), "registry", "j", time.time() + 60)


def test_policy_check_uses_current_principal():
    assert current_principal() is None
    with pytest.raises(Unauthenticated):
        policy_check(SKILLS_PUBLISH)
    token = set_principal(_principal("registry.read"))
    try:
        with pytest.raises(PermissionDenied, match="missing scope 'skills.publish'"):
            policy_check(SKILLS_PUBLISH)
    finally:
        reset_principal(token)
    token = set_principal(_principal(SKILLS_PUBLISH))
    try:
        assert policy_check(SKILLS_PUBLISH).subject == "alice"
    finally:
        reset_principal(token)
    assert current_principal() is None


def test_policy_check_explicit_principal_and_scope_list():
    assert policy_check("serving.infer", _principal("serving.infer")).has("serving.infer")
    assert len(ALL_SCOPES) == 15 and {"operations.cancel", "puller.push"} <= ALL_SCOPES
