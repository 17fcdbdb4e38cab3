"""Puller.Push against a real registry and the puller in-process: a user's own model streamed in chunks,
inspected in the real subprocess, signed, stored, registered with lineage; and every way an upload can be
wrong, refused with the field named and nothing stored."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlmesh.v1 import common_pb2, operations_pb2, puller_pb2, registry_pb2
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, PullerSettings, ServerSettings
from services.puller.credentials import CredentialResolver
from services.puller.server import build_puller
from tests.puller.conftest import Stubs, sha256, stored_objects

SUCCEEDED, FAILED = operations_pb2.OPERATION_STATE_SUCCEEDED, operations_pb2.OPERATION_STATE_FAILED
CHUNK = 64 * 1024


def linear_onnx(weights: np.ndarray, bias: float = 0.5) -> bytes:
    """y = x @ W + b: a regressor with one float input [N, F] and one output [N, K]."""
    features, outputs = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(np.full(outputs, bias, dtype=np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


SMALL = linear_onnx(np.arange(8, dtype=np.float32).reshape(4, 2) / 10)


def header(name: str, files: dict[str, bytes], **fields) -> puller_pb2.PushRequest:
    pushed = [puller_pb2.PushFile(path=p, size=len(d), sha256=sha256(d)) for p, d in files.items()]
    return puller_pb2.PushRequest(header=puller_pb2.PushHeader(name=name, files=pushed, **fields))


def chunks(files: dict[str, bytes], size: int = CHUNK):
    for path, data in files.items():
        for offset in range(0, len(data), size):
            yield puller_pb2.PushRequest(chunk=puller_pb2.PushChunk(path=path, offset=offset,
                                                                    data=data[offset:offset + size]))


async def push(stubs, messages) -> operations_pb2.Operation:
    async def stream():
        for message in messages:
            yield message

    return await stubs.puller.Push(stream(), metadata=tuple(stubs._puller.items()))


async def push_files(stubs, name: str, files: dict[str, bytes], **fields):
    return await push(stubs, [header(name, files, **fields), *chunks(files)])


def staged(puller) -> list:
    root = puller.pipeline.staging_root
    return sorted(root.iterdir()) if root.is_dir() else []


async def test_push_streams_inspects_signs_registers_with_lineage(stubs, puller, mesh_settings):
    big = linear_onnx(np.random.default_rng(0).normal(size=(1200, 1300)))  # ~6 MiB: past gRPC's 4 MiB message limit
    assert len(big) > 4 * 1024 * 1024
    op = await push_files(stubs, "churn", {"churn.onnx": big}, aliases=["prod"])
    assert op.kind == "push" and op.created_by == "test-operator"
    final, seen = await stubs.finished(op.id)
    assert final.state == SUCCEEDED, final.error
    stages = [o.progress.stage for o in seen]   # throttled: a quick stage may be overtaken by the next
    assert stages[-1] == "register" and len(set(stages)) >= 3, stages
    artifact = common_pb2.Artifact()
    final.result.Unpack(artifact)
    assert artifact.name == "churn" and set(artifact.aliases) == {"churn@latest", "churn@prod"}
    assert artifact.manifest.framework == "onnx"
    assert [f.path for f in artifact.manifest.files] == ["model.onnx"]   # stored under one name, whatever the file's
    assert artifact.manifest.files[0].sha256 == sha256(big)
    assert artifact.signature.bundle and artifact.source_uri == f"upload:sha256:{sha256(big)}"
    meta = dict(artifact.manifest.metadata)
    assert list(meta["interfaces"]) == ["predictor"]
    # every file, and the signature, is in the object store; the staging folder is gone
    assert sha256(big) in stored_objects(mesh_settings) and staged(puller) == []

    graph = await stubs.reg("GetLineage", registry_pb2.GetLineageRequest(entity=f"artifact:{artifact.id}"))
    pushes = [e for e in graph.events if e.operation == "push"]
    assert len(pushes) == 1 and pushes[0].actor == "test-operator"
    assert list(pushes[0].inputs) == [f"source:upload:sha256:{sha256(big)}"]

    # The same bytes again, under another file name: the same artifact (content-addressed), nothing new stored.
    objects = stored_objects(mesh_settings)
    again, _ = await stubs.finished((await push_files(stubs, "churn", {"renamed.onnx": big})).id)
    twin = common_pb2.Artifact()
    again.result.Unpack(twin)
    assert twin.id == artifact.id and stored_objects(mesh_settings) == objects


async def test_new_bytes_are_a_new_version_and_aliases_move_only_when_asked(stubs):
    first, _ = await stubs.finished((await push_files(stubs, "m", {"m.onnx": SMALL}, aliases=["prod"])).id)
    other = linear_onnx(np.ones((4, 2), dtype=np.float32))
    second, _ = await stubs.finished((await push_files(stubs, "m", {"m.onnx": other})).id)
    a, b = common_pb2.Artifact(), common_pb2.Artifact()
    first.result.Unpack(a)
    second.result.Unpack(b)
    assert a.id != b.id
    prod = await stubs.reg("GetArtifact", registry_pb2.GetArtifactRequest(ref="m@prod"))
    latest = await stubs.reg("GetArtifact", registry_pb2.GetArtifactRequest(ref="m"))
    assert prod.id == a.id and latest.id == b.id
    await stubs.finished((await push_files(stubs, "m", {"m.onnx": other}, aliases=["prod"])).id)
    assert (await stubs.reg("GetArtifact", registry_pb2.GetArtifactRequest(ref="m@prod"))).id == b.id


async def test_a_stream_cut_halfway_stores_nothing(stubs, puller, mesh_settings):
    data = linear_onnx(np.random.default_rng(1).normal(size=(400, 300)))
    files = {"model.onnx": data}
    sent = asyncio.Event()

    async def stream():
        yield header("cut", files)
        for index, message in enumerate(chunks(files, 16 * 1024)):
            yield message
            if index == 3:
                sent.set()
                await asyncio.sleep(30)   # the client goes away here

    call = stubs.puller.Push(stream(), metadata=tuple(stubs._puller.items()))
    await sent.wait()
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):   # the server sees the cancel on its own schedule
        if not staged(puller):
            break
        await asyncio.sleep(0.05)
    assert staged(puller) == [] and stored_objects(mesh_settings) == []
    assert not (await stubs.list_operations()).operations

    # A client that closes the stream early is told which file is incomplete.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await push(stubs, [header("cut", files), *list(chunks(files, 16 * 1024))[:2]])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model.onnx" in err.value.details()
    assert staged(puller) == [] and stored_objects(mesh_settings) == []


def _field(err) -> str:
    return dict(err.value.trailing_metadata() or ()).get("mlmesh-error-field", "")


@pytest.mark.parametrize("messages, field", [
    ([], "header"),
    ([puller_pb2.PushRequest(chunk=puller_pb2.PushChunk(path="m.onnx", data=b"x"))], "header"),
    ([header("", {"m.onnx": SMALL})], "name"),
    ([header("ok", {})], "files"),
    ([header("ok", {"../escape.onnx": SMALL})], "files[0].path"),
    ([header("ok", {"/abs.onnx": SMALL})], "files[0].path"),
    ([header("ok", {"empty.onnx": b""})], "files[0].size"),
    ([puller_pb2.PushRequest(header=puller_pb2.PushHeader(
        name="ok", files=[puller_pb2.PushFile(path="m.onnx", size=3, sha256="abc")]))], "files[0].sha256"),
    ([header("ok", {"m.onnx": SMALL}, format="pickle")], "format"),
    ([header("ok", {"m.onnx": SMALL}, aliases=["Prod!"])], "aliases[0]"),
    ([header("ok", {"m.onnx": SMALL}, labels=["a", "a"])], "labels"),
    ([header("ok", {"m.onnx": SMALL}, reference=puller_pb2.PushFile(path="ref.xlsx", size=3, sha256="0" * 64))],
     "reference.path"),
    ([header("ok", {"m.onnx": SMALL}), *chunks({"other.onnx": SMALL})], "chunk.path"),
    ([header("ok", {"m.onnx": SMALL}),
      puller_pb2.PushRequest(chunk=puller_pb2.PushChunk(path="m.onnx", offset=10, data=SMALL[10:]))], "chunk.offset"),
    ([header("ok", {"m.onnx": SMALL}), *chunks({"m.onnx": SMALL[:-1] + b"\x00"})], "chunk.data"),
    ([header("ok", {"m.onnx": SMALL}), *chunks({"m.onnx": SMALL + b"extra"})], "chunk.data"),
    ([header("ok", {"m.onnx": SMALL}), header("ok", {"m.onnx": SMALL})], "chunk"),
], ids=["nothing", "no-header", "no-name", "no-files", "traversal", "absolute", "empty-file", "bad-sha256",
        "format", "alias", "duplicate-labels", "reference-kind", "unknown-chunk", "offset-gap", "hash-mismatch",
        "too-many-bytes", "second-header"])
async def test_bad_uploads_are_refused_naming_the_field_and_store_nothing(stubs, puller, mesh_settings, messages,
                                                                         field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await push(stubs, messages)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert _field(err) == field, err.value.details()
    assert staged(puller) == [] and stored_objects(mesh_settings) == []


async def test_a_model_the_inspector_refuses_fails_its_operation_and_stores_nothing(stubs, puller, mesh_settings):
    for garbage in (SMALL[: len(SMALL) // 2], b"\x80\x04garbage pickle"):
        final, _ = await stubs.finished((await push_files(stubs, "bad", {"model.onnx": garbage})).id)
        assert final.state == FAILED
        assert final.error.code in ("INVALID_ARGUMENT", "FAILED_PRECONDITION") and final.error.field, final.error
    assert staged(puller) == [] and stored_objects(mesh_settings) == []


async def test_allow_pickle_needs_the_operator_scope(stubs, mesh_settings):
    issuer = TokenIssuer.from_settings(mesh_settings, AuthSettings())
    token = issuer.mint("someone", "puller", ["puller.push"])

    async def stream():
        yield header("p", {"m.onnx": SMALL}, allow_pickle=True)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.puller.Push(stream(), metadata=(("authorization", f"Bearer {token}"),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_push_needs_its_scope(stubs, mesh_settings):
    token = TokenIssuer.from_settings(mesh_settings, AuthSettings()).mint("someone", "puller", ["puller.pull"])

    async def stream():
        yield header("p", {"m.onnx": SMALL})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.puller.Push(stream(), metadata=(("authorization", f"Bearer {token}"),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_size_limit_is_configurable(mesh_settings, registry, tmp_path):
    app = await build_puller(mesh_settings, ServerSettings(), AuthSettings(), puller=PullerSettings(max_push_bytes=1000),
                             credentials=CredentialResolver(tmp_path / "c", environ={}),
                             registry_address=registry.address)
    address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    try:
        async with grpc.aio.insecure_channel(address) as pc, grpc.aio.insecure_channel(registry.address) as rc:
            limited = Stubs(pc, rc, TokenIssuer.from_settings(mesh_settings, AuthSettings()))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await push_files(limited, "big", {"m.onnx": linear_onnx(np.ones((40, 20)))})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(err) == "files"
        assert "MLMESH_PULLER_MAX_PUSH_BYTES" in err.value.details()
    finally:
        await app.stop(0)


def test_upload_digest_of_a_folder_is_stable():
    from services.puller.upload import PushedFile, PushSpec

    a = PushSpec("x", (PushedFile("a.onnx", 1, "0" * 64), PushedFile("a.onnx.data", 2, "1" * 64)))
    b = PushSpec("x", (PushedFile("a.onnx.data", 2, "1" * 64), PushedFile("a.onnx", 1, "0" * 64)))
    assert a.upload_digest == b.upload_digest and a.upload_digest.startswith("sha256:")
    assert PushSpec("x", (PushedFile("m", 1, "2" * 64),)).upload_digest == "sha256:" + "2" * 64


async def test_uploads_left_by_a_killed_puller_are_removed_at_start(mesh_settings, registry, tmp_path):
    settings = PullerSettings(cache_dir=tmp_path / "cache")
    left = tmp_path / "cache" / "staging" / "push-0123abcd"
    (left / "model").mkdir(parents=True)
    (left / "model" / "model.onnx").write_bytes(SMALL[:10])
    app = await build_puller(mesh_settings, ServerSettings(), AuthSettings(), puller=settings,
                             credentials=CredentialResolver(tmp_path / "c", environ={}),
                             registry_address=registry.address)
    try:
        assert not left.exists()
    finally:
        await app.stop(0)
