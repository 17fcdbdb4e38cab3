"""The OAuth protected resource: exact-audience tokens (RFC 8707), 401 with the RFC 9728 challenge, 403
insufficient_scope, Host/Origin checks, the metadata document; nothing refused reaches a backend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from typer.testing import CliRunner

from services.core.auth.keys import issuer_key_path, key_id, load_or_create_issuer_key, public_jwk
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings
from services.mcp_gateway import auth
from services.mesh.cli import app as mlmesh
from tests.mcp_gateway.conftest import ALL_TOOL_SCOPES, CANONICAL, ORIGIN, mcp_http, raw_client, running

METADATA_URL = f"{ORIGIN}/.well-known/oauth-protected-resource/mcp/ml"
CHALLENGE = f'Bearer resource_metadata="{METADATA_URL}"'
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json",
           "mcp-protocol-version": "2025-11-25"}


def call_body(tool: str = "data.ml.list_models", arguments: dict | None = None) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments or {}}}


@pytest.fixture
def key(mesh_settings) -> ec.EllipticCurvePrivateKey:
    return load_or_create_issuer_key(issuer_key_path(mesh_settings, AuthSettings()))


def claims(**override) -> dict:
    now = int(time.time())
    base = {"iss": "mlmesh", "sub": "agent-7", "aud": CANONICAL, "scope": " ".join(ALL_TOOL_SCOPES), "iat": now,
            "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    base.update(override)
    return {k: v for k, v in base.items() if v is not None}


def es256(key, body: dict, kid: str | None = None) -> str:
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid or key_id(key.public_key())})


def hs256_with(secret: bytes, body: dict, kid: str) -> str:
    """Algorithm confusion: an HMAC over the token keyed with the issuer's public key (PyJWT refuses to make one)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(body).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def refused_tokens(key) -> dict[str, str]:
    other = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "data MCP": es256(key, claims(aud=f"{ORIGIN}/mcp/data")),
        "parent path": es256(key, claims(aud=f"{ORIGIN}/mcp")),
        "sibling ml2": es256(key, claims(aud=f"{ORIGIN}/mcp/ml2")),
        "sibling mlx": es256(key, claims(aud=f"{ORIGIN}/mcp/mlx")),
        "child path": es256(key, claims(aud=f"{ORIGIN}/mcp/ml/x")),
        "bare origin": es256(key, claims(aud=ORIGIN)),
        "bare origin slash": es256(key, claims(aud=ORIGIN + "/")),
        "trailing slash": es256(key, claims(aud=CANONICAL + "/")),
        "upper-case scheme": es256(key, claims(aud="HTTP://127.0.0.1:8765/mcp/ml")),
        "localhost": es256(key, claims(aud="http://localhost:8765/mcp/ml")),
        "a backend audience": es256(key, claims(aud="registry")),
        "several audiences": es256(key, claims(aud=[CANONICAL, f"{ORIGIN}/mcp/data"])),
        "no audience": es256(key, claims(aud=None)),
        "expired": es256(key, claims(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200,
                                     exp=int(time.time()) - 3600)),
        "not yet valid": es256(key, claims(nbf=int(time.time()) + 3600)),
        "wrong issuer": es256(key, claims(iss="https://evil.example")),
        "unsigned (alg none)": jwt.encode(claims(), None, algorithm="none"),
        "wrongly signed": es256(other, claims(), kid=key_id(key.public_key())),
        "unknown key": es256(other, claims()),
        "HS256 with the public key": hs256_with(pem, claims(), key_id(key.public_key())),
        "garbage": "not-a-jwt",
    }


async def test_every_refused_token_gets_401_with_the_metadata_challenge(http_app, key, access_log, serving):
    async with raw_client(http_app, **HEADERS) as http:
        for case, token in refused_tokens(key).items():
            reply = await http.post("/mcp/ml", json=call_body(), headers={"authorization": f"Bearer {token}"})
            assert reply.status_code == 401, case
            challenge = reply.headers["www-authenticate"]
            assert challenge.startswith(CHALLENGE) and 'error="invalid_token"' in challenge, case
            assert reply.json()["error"] == "invalid_token", case
        for auth in (None, "Basic YWdlbnQ6c2VjcmV0", "Bearer ", "bearer"):
            reply = await http.post("/mcp/ml", json=call_body(), headers={"authorization": auth} if auth else {})
            assert reply.status_code == 401 and reply.headers["www-authenticate"] == CHALLENGE, auth
        assert (await http.get("/mcp/ml")).status_code == 401        # the SSE stream and DELETE too
        assert (await http.delete("/mcp/ml")).status_code == 401
    assert access_log.calls() == [] and serving.calls == []


async def test_a_valid_token_works_and_its_variants_do_not(http_app, key, agent_token, access_log):
    async with mcp_http(http_app, es256(key, claims(aud=[CANONICAL]))) as client:   # a one-element list is fine
        assert not (await client.call_tool("data.ml.list_models", {})).is_error
    assert len(access_log.calls()) == 1
    with pytest.raises(Exception):
        async with mcp_http(http_app, agent_token(audience=f"{ORIGIN}/mcp/data")) as client:
            await client.call_tool("data.ml.list_models", {})
    assert len(access_log.calls()) == 1


async def test_missing_scope_is_403_naming_the_scope(http_app, agent_token, access_log, serving, audit_lines):
    token = agent_token(["serving.infer"])
    async with raw_client(http_app, authorization=f"Bearer {token}", **HEADERS) as http:
        reply = await http.post("/mcp/ml", json=call_body("data.ml.halt_all", {"reason": "agent"}))
        assert reply.status_code == 403
        assert reply.headers["www-authenticate"] == (
            f'Bearer error="insufficient_scope", scope="serving.halt", resource_metadata="{METADATA_URL}", '
            'error_description="data.ml.halt_all needs scope serving.halt"')
        assert reply.json() == {"error": "insufficient_scope", "scope": "serving.halt",
                                "error_description": "data.ml.halt_all needs scope serving.halt"}
        # the underscore spelling and a JSON-RPC batch are checked the same way
        assert (await http.post("/mcp/ml", json=call_body("data_ml_list_models"))).status_code == 403
        batch = [call_body("data.ml.list_serving"), call_body("data.ml.halt_all", {"reason": "x"})]
        assert (await http.post("/mcp/ml", json=batch)).status_code == 403
    with pytest.raises(Exception):   # the SDK client surfaces the 403 as an error, not a result
        async with mcp_http(http_app, token) as client:
            await client.call_tool("data.ml.halt_all", {"reason": "agent"})
    assert access_log.calls() == [] and serving.calls == []
    assert [(r["tool"], r["outcome"], r["subject"]) for r in audit_lines()][:1] == [
        ("data.ml.halt_all", "PERMISSION_DENIED", "agent-7")]


async def test_host_and_origin_are_checked_before_the_token(http_app, agent_token, access_log):
    token = agent_token()
    async with raw_client(http_app, authorization=f"Bearer {token}", **HEADERS) as http:
        reply = await http.post("/mcp/ml", json=call_body(), headers={"origin": "http://evil.example"})
        assert reply.status_code == 403 and reply.json()["error_description"] == "Origin not allowed"
        reply = await http.post("/mcp/ml", json=call_body(), headers={"origin": "http://127.0.0.1:8765.evil.example"})
        assert reply.status_code == 403
        reply = await http.post("/mcp/ml", json=call_body(), headers={"host": "evil.example:8765"})
        assert reply.status_code == 421
        reply = await http.post("/mcp/ml", json=call_body(), headers={"host": "evil.example:8765",
                                                                      "authorization": "Bearer junk"})
        assert reply.status_code == 421   # a rebinding page learns nothing about tokens
    assert access_log.calls() == []
    async with mcp_http(http_app, token, origin=ORIGIN) as client:   # the canonical origin is fine
        assert not (await client.call_tool("data.ml.list_models", {})).is_error


async def test_an_oversized_body_is_refused_before_parsing(make_gateway, agent_token, access_log, serving):
    gateway = make_gateway(max_request_body_bytes=4096)
    async with running(gateway) as app, raw_client(app, authorization=f"Bearer {agent_token()}", **HEADERS) as http:
        rows = [[1.0, 2.0, 3.0]] * 1000
        reply = await http.post("/mcp/ml", json=call_body("data.ml.predict", {"session_id": "s", "rows": rows}))
        assert reply.status_code == 413
    assert access_log.calls() == [] and serving.calls == []
    await gateway.close()


async def test_protected_resource_metadata_and_health(http_app):
    async with raw_client(http_app) as http:
        reply = await http.get("/.well-known/oauth-protected-resource/mcp/ml")
        assert reply.status_code == 200 and f'"resource":"{CANONICAL}"'.encode() in reply.content
        assert reply.json() == {"resource": CANONICAL, "authorization_servers": ["mlmesh"],
                                "scopes_supported": sorted(ALL_TOOL_SCOPES), "bearer_methods_supported": ["header"],
                                "resource_name": "mlmesh ML MCP gateway"}
        assert (await http.get("/healthz")).json() == {"status": "ok", "tools": 16}


async def test_the_document_follows_the_canonical_uri_byte_for_byte(make_gateway, issuer, access_log):
    canonical = "https://Mesh.Example.com:8443/mcp/ml"
    gateway = make_gateway(canonical, authorization_servers=["https://auth.example.com"],
                           allowed_hosts=["Mesh.Example.com:8443"])
    async with running(gateway) as app:
        async with raw_client(app) as http:
            reply = await http.get("https://Mesh.Example.com:8443/.well-known/oauth-protected-resource/mcp/ml")
            assert reply.json()["resource"] == canonical
            assert reply.json()["authorization_servers"] == ["https://auth.example.com"]
            token = issuer.mint("agent-7", canonical.lower(), ALL_TOOL_SCOPES)   # case matters: refused
            reply = await http.post("https://Mesh.Example.com:8443/mcp/ml", json=call_body(),
                                    headers={**HEADERS, "authorization": f"Bearer {token}"})
            assert reply.status_code == 401
            assert reply.headers["www-authenticate"].startswith(
                'Bearer resource_metadata="https://Mesh.Example.com:8443/.well-known/oauth-protected-resource/mcp/ml"')
    assert access_log.calls() == []
    await gateway.close()


async def test_tokens_minted_by_the_mlmesh_command_work(http_app, mesh_settings, monkeypatch, access_log):
    monkeypatch.setenv("MLMESH_HOME", str(mesh_settings.home))
    runner = CliRunner()
    scoped = runner.invoke(mlmesh, ["token", "--aud", CANONICAL, "--scope", "registry.read", "--subject", "cli"])
    everything = runner.invoke(mlmesh, ["token", "--aud", CANONICAL])
    backend = runner.invoke(mlmesh, ["token", "--aud", "registry"])
    assert scoped.exit_code == everything.exit_code == backend.exit_code == 0, scoped.output
    async with mcp_http(http_app, scoped.output.strip()) as client:
        assert not (await client.call_tool("data.ml.list_models", {})).is_error
    async with raw_client(http_app, **HEADERS) as http:
        reply = await http.post("/mcp/ml", json=call_body("data.ml.list_serving"),
                                headers={"authorization": f"Bearer {scoped.output.strip()}"})
        assert reply.status_code == 403 and 'scope="serving.read"' in reply.headers["www-authenticate"]
        reply = await http.post("/mcp/ml", json=call_body(),
                                headers={"authorization": f"Bearer {backend.output.strip()}"})
        assert reply.status_code == 401
    async with mcp_http(http_app, everything.output.strip()) as client:   # default: every mesh scope
        assert not (await client.call_tool("data.ml.list_serving", {})).is_error


async def test_jwks_verification(make_gateway, mesh_settings, access_log, monkeypatch):
    published = [ec.generate_private_key(ec.SECP256R1())]

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"keys": [public_jwk(k.public_key()) for k in published]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = make_gateway(jwks_url=f"http://127.0.0.1:{server.server_port}/jwks.json",
                               token_issuer="https://auth.example.com")
        monkeypatch.setattr(auth, "_JWKS_REFRESH_S", 0.0)
        good = TokenIssuer(published[0], "https://auth.example.com", 600).mint("agent-9", CANONICAL, ALL_TOOL_SCOPES)
        mesh_signed = TokenIssuer.from_settings(mesh_settings, AuthSettings()).mint("agent-9", CANONICAL,
                                                                                     ALL_TOOL_SCOPES)
        rotated = ec.generate_private_key(ec.SECP256R1())
        after_rotation = TokenIssuer(rotated, "https://auth.example.com", 600).mint("agent-9", CANONICAL,
                                                                                     ["registry.read"])
        async with running(gateway) as app:
            async with mcp_http(app, good) as client:
                assert not (await client.call_tool("data.ml.list_models", {})).is_error
            async with raw_client(app, **HEADERS) as http:
                for token in (mesh_signed, after_rotation):
                    reply = await http.post("/mcp/ml", json=call_body(), headers={"authorization": f"Bearer {token}"})
                    assert reply.status_code == 401
            published.append(rotated)   # the issuer publishes its new key: the next unknown kid refetches
            async with mcp_http(app, after_rotation) as client:
                assert not (await client.call_tool("data.ml.list_models", {})).is_error
        await gateway.close()
    finally:
        server.shutdown()
