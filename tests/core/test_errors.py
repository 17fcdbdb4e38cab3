"""What a caller is told when something fails: a peer's bug stays a bug (never "retry later"), and library
messages reach callers as one line without the server's file paths."""

from __future__ import annotations

import grpc
import pytest

from services.core.errors import Internal, InvalidArgument, Unavailable, error_for_status, outward


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS])
def test_a_peers_internal_error_is_internal_not_unavailable(code):
    error = error_for_status(code, "internal error")
    assert isinstance(error, Internal) and error.code == grpc.StatusCode.INTERNAL


def test_other_statuses_keep_their_meaning():
    assert isinstance(error_for_status(grpc.StatusCode.UNAVAILABLE, "down"), Unavailable)
    assert isinstance(error_for_status(grpc.StatusCode.INVALID_ARGUMENT, "bad"), InvalidArgument)


def test_outward_keeps_the_first_line_cuts_paths_and_caps():
    text = ("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from /srv/mlmesh/cache/ab12/model.onnx failed\n"
            "Traceback (most recent call last):\n  File \"/srv/mlmesh/services/x.py\", line 3")
    assert outward(text) == "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from model.onnx failed"
    assert outward("cannot open '/tmp/a/b/weights.bin'") == "cannot open 'weights.bin'"
    assert outward("1/2 of a/b relative") == "1/2 of a/b relative"
    assert len(outward("x" * 1000)) == 300 and outward("x" * 1000).endswith("…")


def test_a_model_that_does_not_load_is_named_without_the_servers_paths(tmp_path):
    from services.serving.interfaces.backends.runtimes import OnnxRuntime

    broken = tmp_path / "deep" / "folder" / "model.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a graph")
    with pytest.raises(InvalidArgument) as refused:
        OnnxRuntime(broken)
    assert "model.onnx" in refused.value.message and str(tmp_path) not in refused.value.message
    assert "\n" not in refused.value.message
