"""The Puller service over gRPC: synchronous refusals, failures as operation errors, cancel, secrets."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from mlmesh.v1 import operations_pb2, puller_pb2, puller_pb2_grpc
from services.core.auth.policy import OPERATIONS_READ
from services.core.auth.tokens import TokenIssuer
from services.core.grpc.interceptor import ERROR_FIELD_KEY
from services.core.settings import AuthSettings
from tests.puller.conftest import TOKEN_ENV, safetensors_bytes, stored_objects, torch_pickle_bytes, tiny_state_dict

S = operations_pb2


def _field(exc: grpc.aio.AioRpcError) -> str | None:
    return dict(exc.trailing_metadata() or ()).get(ERROR_FIELD_KEY)


@pytest.mark.parametrize("fields, code, field", [
    ({"source": "s3://bucket/model"}, grpc.StatusCode.INVALID_ARGUMENT, "source"),
    ({"source": "hf://only-one-part"}, grpc.StatusCode.INVALID_ARGUMENT, "source"),
    ({"source": "hf://org/tiny", "name": "bad name"}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
    ({"source": "hf://org/tiny", "aliases": ["Prod"]}, grpc.StatusCode.INVALID_ARGUMENT, "aliases[0]"),
    ({"source": "torchhub://pytorch/vision/resnet18", "allow_patterns": ["*"]}, grpc.StatusCode.INVALID_ARGUMENT,
     "allow_patterns"),
    ({"source": "torchhub://pytorch/vision:v0.15.2/resnet18"}, grpc.StatusCode.PERMISSION_DENIED, None),
    ({"source": "torchhub://PyTorch/vision/resnet18"}, grpc.StatusCode.PERMISSION_DENIED, None),
    ({"source": "torchhub://pytorch/visi\u043en/resnet18"}, grpc.StatusCode.INVALID_ARGUMENT, "source"),
])
async def test_refused_before_any_operation_or_request(stubs, hub, mirror, fields, code, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.pull(**fields)
    assert caught.value.code() == code and _field(caught.value) == field
    if code == grpc.StatusCode.PERMISSION_DENIED:
        assert "allow-list" in caught.value.details()
    assert (await stubs.list_operations()).operations == []
    assert hub.count() == 0 and mirror.count == 0


async def test_pull_needs_the_pull_scope(stubs, puller, mesh_settings):
    token = TokenIssuer.from_settings(mesh_settings, AuthSettings()).mint("reader", "puller", [OPERATIONS_READ])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.puller.Pull(puller_pb2.PullRequest(source="hf://org/tiny"),
                                metadata=(("authorization", f"Bearer {token}"),))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_failures_become_operation_errors_and_store_nothing(stubs, hub, mesh_settings):
    weights = safetensors_bytes(2)
    hub.add_commit("org/tampered", {"model.safetensors": weights})
    hub.serve_instead[("org/tampered", "model.safetensors")] = weights[:-1] + bytes([weights[-1] ^ 1])
    hub.add_commit("org/pickled", {"pytorch_model.bin": torch_pickle_bytes(tiny_state_dict())})
    for source, code, field in (("hf://org/tampered", "FAILED_PRECONDITION", ""),
                                ("hf://org/pickled", "FAILED_PRECONDITION", "allow_pickle"),
                                ("hf://org/missing", "NOT_FOUND", "source")):
        final, _ = await stubs.finished((await stubs.pull(source=source)).id)
        assert (final.state, final.error.code, final.error.field) == (S.OPERATION_STATE_FAILED, code, field)
    assert stored_objects(mesh_settings) == []


async def test_cancel_mid_download_leaves_nothing_in_the_store(stubs, hub, mesh_settings, puller):
    size = 40 * 1024 * 1024
    hub.add_commit("org/big", {"config.json": b"{}", "model.safetensors": b"\1" * size})
    hub.chunk_delay_s = 0.02
    op = await stubs.pull(source="hf://org/big")
    async for update in stubs.watch(op.id):
        if update.progress.stage == "download" and update.progress.done > 0:
            break
    cancelling = await stubs.cancel(op.id)
    assert cancelling.cancel_requested
    final, _ = await stubs.finished(op.id)
    assert final.state == S.OPERATION_STATE_CANCELLED and final.error.code == "CANCELLED"
    await asyncio.sleep(0.2)
    assert hub.bodies_sent[-1] < size  # stopped mid-file, not after it
    assert stored_objects(mesh_settings) == []
    cache = mesh_settings.home / "cache"
    assert not (cache / "staging").exists() or list((cache / "staging").iterdir()) == []
    assert not [p for p in (cache / "hf").rglob("*") if p.is_file() and "blobs" in p.parts and p.stat().st_size > 10]


async def test_the_token_reaches_the_hub_and_nothing_else(stubs, hub, service_env, caplog):
    token = "hf_SERVICE_SECRET_42"
    service_env[TOKEN_ENV] = token
    hub.required_token = token
    hub.add_commit("org/private", {"config.json": b"{}", "model.safetensors": safetensors_bytes(4)})
    caplog.set_level(logging.DEBUG)
    op = await stubs.pull(source="hf://org/private")
    final, seen = await stubs.finished(op.id)
    assert final.state == S.OPERATION_STATE_SUCCEEDED, final.error
    assert {r.headers.get("authorization") for r in hub.requests} == {f"Bearer {token}"}
    for snapshot in (op, final, *seen):
        assert token.encode() not in snapshot.SerializeToString()
    assert all(token not in record.getMessage() for record in caplog.records)
    hub.required_token = "another"  # a wrong token is refused by the hub, and still not echoed anywhere
    failed, _ = await stubs.finished((await stubs.pull(source="hf://org/private")).id)
    assert failed.state == S.OPERATION_STATE_FAILED and token not in failed.error.message


async def test_allowed_pickle_is_stored_only_as_safetensors(stubs, hub, mesh_settings):
    hub.add_commit("org/legacy", {"config.json": b"{}", "pytorch_model.bin": torch_pickle_bytes(tiny_state_dict(6))})
    final, _ = await stubs.finished((await stubs.pull(source="hf://org/legacy", allow_pickle=True)).id)
    assert final.state == S.OPERATION_STATE_SUCCEEDED, final.error
    from mlmesh.v1 import common_pb2

    artifact = common_pb2.Artifact()
    final.result.Unpack(artifact)
    assert sorted(f.path for f in artifact.manifest.files) == [
        "config.json", "pytorch_model.safetensors", "pytorch_model.safetensors.sha256"]
    assert len(stored_objects(mesh_settings)) == 4  # three files and the signature bundle; no pickle


async def test_allow_pickle_needs_the_operator_scope(puller, hub, mesh_settings):
    from services.core.auth.policy import PULLER_PULL

    hub.add_commit("org/legacy", {"config.json": b"{}", "pytorch_model.bin": torch_pickle_bytes(tiny_state_dict(6))})
    token = TokenIssuer.from_settings(mesh_settings, AuthSettings()).mint("agent", "puller", [PULLER_PULL])
    async with grpc.aio.insecure_channel(puller.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await puller_pb2_grpc.PullerStub(channel).Pull(
                puller_pb2.PullRequest(source="hf://org/legacy", allow_pickle=True),
                metadata=(("authorization", f"Bearer {token}"),),
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "puller.allow_pickle" in caught.value.details()
    assert not [r for r in hub.requests if "legacy" in r.path], "refused before any request"
