"""Launcher and error mapping, without the binary: what a machine that lacks Triton is told."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from services.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from services.serving.triton.executor import from_triton, from_triton_load
from services.serving.triton.launcher import TritonServer, TritonSettings, available


def test_missing_install_says_which_command_sets_it_up(tmp_path):
    settings = TritonSettings(url="", venv=tmp_path / "nothing")
    verdict = available(settings)
    assert not verdict and "make triton" in verdict.reason


async def test_start_without_install_is_failed_precondition(tmp_path):
    server = TritonServer(
        TritonSettings(url="", venv=tmp_path / "nothing"), model_repository=tmp_path / "m", log_file=tmp_path / "t.log"
    )
    with pytest.raises(FailedPrecondition, match="setup_triton"):
        await server.start()
    assert server.pid is None


async def test_external_url_that_answers_nothing_is_unavailable(tmp_path):
    settings = TritonSettings(url="127.0.0.1:1", start_timeout_s=0.3)
    assert available(settings)  # configured; reachability is for start() to find out
    server = TritonServer(settings, model_repository=tmp_path / "m", log_file=tmp_path / "t.log")
    with pytest.raises(Unavailable, match="not ready"):
        await server.start()
    assert server.pid is None  # nothing was started


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("StatusCode.NOT_FOUND", Unavailable),  # an unloaded model: "has no available versions"
        ("StatusCode.UNAVAILABLE", Unavailable),  # the server is gone
        ("StatusCode.INTERNAL", Unavailable),  # the model raised
        ("StatusCode.INVALID_ARGUMENT", InvalidArgument),  # Triton's own shape check
        ("StatusCode.RESOURCE_EXHAUSTED", ResourceExhausted),
        (None, InvalidArgument),  # refused by the client library before sending
    ],
)
def test_triton_errors_become_domain_errors(status, error):
    mapped = from_triton(InferenceServerException("boom", status=status), model="m")
    assert type(mapped) is error and "boom" in mapped.message


def test_a_failed_load_is_failed_precondition_unless_the_server_is_gone():
    broken = InferenceServerException("failed to load 'm'", status="StatusCode.INTERNAL")
    gone = InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")
    assert isinstance(from_triton_load(broken, model="m"), FailedPrecondition)
    assert isinstance(from_triton_load(gone, model="m"), Unavailable)
