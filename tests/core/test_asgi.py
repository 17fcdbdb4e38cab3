"""The HTTP processes (gateway, console) stop like the gRPC services: drain on SIGTERM/SIGINT, exit 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVE = """
import sys, uvicorn
from services.core.asgi import DrainingServer

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

server_class = DrainingServer if sys.argv[2] == "draining" else uvicorn.Server
server_class(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)).run()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_then_signal(kind: str, sig: int) -> int:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(port), kind], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(sig)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_draining_server_exits_0_on_a_stop_signal(sig):
    assert _serve_then_signal("draining", sig) == 0


def test_plain_uvicorn_dies_of_the_signal_which_is_why_draining_server_exists():
    assert _serve_then_signal("plain", signal.SIGTERM) == -signal.SIGTERM
