"""JSON log lines and their redaction, written by a real in-process grpc.aio service whose handler is careless
with the caller's token: it logs the metadata, and fails with the token in the exception."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mlmesh.v1 import operations_pb2, operations_pb2_grpc
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.grpc.interceptor import MeshInterceptor
from services.core.observability.grpc_tracing import ServerTracing
from services.core.observability.logs import REDACTED, make_handler, redact

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
log = logging.getLogger("mlmesh.test.careless")


class Careless(operations_pb2_grpc.OperationsServicer):
    async def GetOperation(self, request, context):
        log.info("metadata of this call: %s", tuple(context.invocation_metadata()))
        if request.id == "boom":
            auth = dict(context.invocation_metadata())["authorization"]
            raise RuntimeError(f"could not use {auth}")
        return operations_pb2.Operation(id=request.id)


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def lines():
    """What the `mlmesh` loggers write through the redacting handler, as parsed lines."""
    stream = io.StringIO()
    handler = make_handler(stream, service="registry")
    logger = logging.getLogger("mlmesh")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()], stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
async def stub(key):
    verifier = TokenVerifier(key.public_key(), "mlmesh", "registry", leeway_s=5)
    server = grpc.aio.server(interceptors=[MeshInterceptor(verifier, tracing=ServerTracing(None))])
    operations_pb2_grpc.add_OperationsServicer_to_server(Careless(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield operations_pb2_grpc.OperationsStub(channel)
    await server.stop(None)


async def test_lines_are_json_with_service_request_trace_and_subject_and_no_token(stub, key, lines):
    token = TokenIssuer(key, "mlmesh", 600).mint("svc-a", "registry", ["operations.read"])
    metadata = (("authorization", f"Bearer {token}"), ("x-request-id", "req-1"), ("traceparent", TRACEPARENT))
    await stub.GetOperation(operations_pb2.GetOperationRequest(id="ok"), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetOperation(operations_pb2.GetOperationRequest(id="boom"), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    parsed, stream = lines
    text = stream.getvalue()
    assert token not in text and token.rsplit(".", 1)[-1] not in text
    assert text.count(REDACTED) >= 3   # the metadata twice (two calls) and the exception
    records = parsed()
    careless = [r for r in records if r["logger"] == "mlmesh.test.careless"]
    assert len(careless) == 2
    for record in careless:   # written inside the call: its contextvars and the caller's trace
        assert (record["service"], record["level"], record["request_id"], record["subject"], record["trace_id"]) == (
            "registry", "INFO", "req-1", "svc-a", TRACE_ID)
        assert "Bearer [REDACTED]" in record["message"]
    (error,) = [r for r in records if r["logger"] == "mlmesh.grpc"]
    assert error["level"] == "ERROR" and "RuntimeError: could not use Bearer [REDACTED]" in error["exception"]
    access = [r for r in records if r["logger"] == "mlmesh.access"]
    assert [(r["request_id"], r["subject"]) for r in access] == [("req-1", "svc-a")] * 2
    assert "INTERNAL" in access[1]["message"]


async def test_a_refused_token_is_not_logged_either(stub, lines):
    forged = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLWZvcmdlZA"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetOperation(operations_pb2.GetOperationRequest(id="x"),
                                metadata=(("authorization", f"Bearer {forged}"), ("x-request-id", forged[:100])))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    _, stream = lines
    assert "eyJ" not in stream.getvalue() and "UNAUTHENTICATED" in stream.getvalue()


def test_text_format_is_redacted_too():
    stream = io.StringIO()
    handler = make_handler(stream, service="x", log_format="text")
    record = logging.LogRecord("mlmesh.x", logging.WARNING, __file__, 1, "sent %s", ("authorization: secret-1",), None)
    handler.handle(record)
    line = stream.getvalue()
    assert "secret-1" not in line and line.rstrip().endswith("WARNING mlmesh.x sent authorization: [REDACTED]")


@pytest.mark.parametrize("text, kept", [
    ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer "),
    ("('authorization', 'Basic dXNlcjpwYXNz')", "('authorization', 'Basic "),
    ("jwt eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln, then more", "jwt "),
    ("bearer tok3n", "bearer "),
])
def test_redact_scrubs_credentials_and_keeps_the_rest(text, kept):
    scrubbed = redact(text)
    assert scrubbed.startswith(kept) and REDACTED in scrubbed
    assert not any(secret in scrubbed for secret in ("abc.def-ghi", "dXNlcjpwYXNz", "eyJ", "tok3n"))


def test_redact_leaves_ordinary_text_alone():
    text = "GetSkill NOT_FOUND 1.2ms sub=operator rid=abc peer=ipv4:127.0.0.1:5 (authorized)"
    assert redact(text) == text


def test_a_service_that_crashes_in_native_code_logs_where():
    """A segfault (here raised on purpose) leaves the Python stacks of every thread in the service's stderr,
    which `mlmesh up` writes to its log: the last lines then say where it died."""
    script = ("import os, signal\n"
              "from services.core.grpc.server import configure_logging\n"
              "configure_logging('INFO', service='registry')\n"
              "def die_here():\n"
              "    os.kill(os.getpid(), signal.SIGSEGV)\n"
              "die_here()\n")
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in crashed.stderr
    assert "in die_here" in crashed.stderr, crashed.stderr
