"""The compiler service end to end: a real registry and the compiler in-process on 127.0.0.1:0 over one
SQLite database and one object store, real stubs and minted tokens. A model saved by the SaveHandler
and registered is compiled; the operation reports its stages; the output is stored, registered with
lineage, and laid out as a valid Triton entry. Bad requests get their status and leave nothing."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch

from mlmesh.v1 import (
    common_pb2, compiler_pb2, compiler_pb2_grpc, operations_pb2, operations_pb2_grpc, registry_pb2, registry_pb2_grpc,
)
from services.compiler.server import build_compiler
from services.compiler.triton_config import check_entry
from services.core.artifacts.objectstore import ObjectStore
from services.core.artifacts.save import SaveHandler
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.errors import IntegrityError
from services.core.grpc.interceptor import ERROR_FIELD_KEY
from services.core.lineage import LineageBus
from services.core.settings import ArtifactSettings, AuthSettings, MeshSettings, ObservabilitySettings, ServerSettings
from services.registry.server import build_registry
from tests.compiler.conftest import STATS, DataDependent, make_model

DONE = (operations_pb2.OPERATION_STATE_SUCCEEDED, operations_pb2.OPERATION_STATE_FAILED,
        operations_pb2.OPERATION_STATE_CANCELLED)


@dataclass
class Mesh:
    settings: MeshSettings
    compiler: compiler_pb2_grpc.CompilerStub
    operations: operations_pb2_grpc.OperationsStub
    registry: registry_pb2_grpc.RegistryStub
    metadata: tuple
    registry_metadata: tuple
    save_cache: Path

    def objects(self) -> set[str]:
        return {p.name for p in (self.settings.home / "objects" / "sha256").glob("*")}

    async def save(self, state_dict, *, name: str, architecture=None, metadata=None) -> common_pb2.Artifact:
        """The SaveHandler writes, signs and stores the weights; the artifact is registered by name."""
        token = set_principal(Principal("test-operator", frozenset(ALL_SCOPES), "registry", "t", time.time() + 600))
        try:
            store = StoreHandler(ObjectStore.from_url(self.settings.object_store_url), LineageBus(), service="test")
            signer = ArtifactSigner(ArtifactSettings(), self.settings.home)
            saved = await SaveHandler(store, signer, self.save_cache, LineageBus()).save(
                state_dict, architecture=architecture, metadata=metadata)
        finally:
            reset_principal(token)
        request = registry_pb2.RegisterArtifactRequest(
            manifest=common_pb2.Manifest(
                files=[common_pb2.ArtifactFile(**f.model_dump()) for f in saved.manifest.files],
                framework=saved.manifest.framework, format=saved.manifest.format),
            name=name, signature=signature_message(signer, saved.signature))
        request.manifest.metadata.update(saved.manifest.metadata)
        return await self.registry.RegisterArtifact(request, metadata=self.registry_metadata)

    async def watch(self, op_id: str) -> list[operations_pb2.Operation]:
        seen = []
        async for update in self.operations.WatchOperation(operations_pb2.WatchOperationRequest(id=op_id),
                                                           metadata=self.metadata, timeout=120):
            seen.append(update)
        assert seen[-1].state in DONE
        return seen

    async def compiled_of(self, artifact_id: str) -> list[common_pb2.CompiledArtifact]:
        response = await self.registry.ListCompiledArtifacts(
            registry_pb2.ListCompiledArtifactsRequest(source_artifact_id=artifact_id), metadata=self.registry_metadata)
        return list(response.compiled)


@contextlib.asynccontextmanager
async def running_mesh(tmp_path, observability: ObservabilitySettings | None = None):
    """(Mesh, the compiler app): a registry and a compiler on free ports, stubs with operator tokens."""
    settings = MeshSettings(home=tmp_path / "home")
    registry = await build_registry(settings, ServerSettings(), AuthSettings())
    registry_port = await registry.start("127.0.0.1", 0)
    compiler = await build_compiler(settings, ServerSettings(), AuthSettings(),
                                    registry_address=f"127.0.0.1:{registry_port}", cancel_poll_s=0.05,
                                    observability=observability)
    compiler_port = await compiler.start("127.0.0.1", 0)
    issuer = TokenIssuer.from_settings(settings, AuthSettings())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{compiler_port}")
    registry_channel = grpc.aio.insecure_channel(f"127.0.0.1:{registry_port}")
    try:
        yield Mesh(
            settings, compiler_pb2_grpc.CompilerStub(channel), operations_pb2_grpc.OperationsStub(channel),
            registry_pb2_grpc.RegistryStub(registry_channel),
            (("authorization", f"Bearer {issuer.mint('test-operator', 'compiler', ALL_SCOPES)}"),),
            (("authorization", f"Bearer {issuer.mint('test-operator', 'registry', ALL_SCOPES)}"),),
            tmp_path / "save-cache",
        ), compiler
    finally:
        await channel.close()
        await registry_channel.close()
        await compiler.stop(0)
        await registry.stop(0)


@pytest.fixture
async def mesh(tmp_path):
    async with running_mesh(tmp_path) as (running, _compiler):
        yield running


async def saved_model(mesh: Mesh, name: str):
    model = make_model(name)
    stats = STATS[name]
    artifact = await mesh.save(model.module.state_dict(), name=f"test/{name}", architecture=model.architecture,
                               metadata={k: v for k, v in stats.items()})
    return model, artifact


async def test_compile_end_to_end(mesh, tmp_path):
    _, artifact = await saved_model(mesh, "lstm")
    before = mesh.objects()
    op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(
        artifact="test/lstm", target="onnx", max_batch_size=16), metadata=mesh.metadata)
    assert op.kind == "compile" and op.service == "compiler"
    updates = await mesh.watch(op.id)
    final = updates[-1]
    assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error
    stages = [u.progress.stage for u in updates if u.progress.stage]
    order = ["load", "export", "validate", "store", "register"]
    assert "export" in stages and stages == sorted(stages, key=order.index)
    assert (final.progress.done, final.progress.total, final.progress.stage) == (5, 5, "register")

    compiled = common_pb2.CompiledArtifact()
    assert final.result.Unpack(compiled)
    assert compiled.source_artifact_id == artifact.id and (compiled.compiler, compiled.target) == ("onnx", "onnx")
    assert [f.path for f in compiled.files] == ["1/model.onnx", "config.pbtxt"]
    assert compiled.sha256 == compiled.files[0].sha256 and compiled.triton_platform == "onnxruntime_onnx"
    assert {"torch", "onnx", "onnxruntime", "onnxscript", "opset"} <= set(compiled.tool_versions)
    assert compiled.kwargs["max_batch_size"] == 16 and compiled.kwargs["opset"] == 20
    assert compiled.validation.passed and list(compiled.validation.batch_sizes) == [1, 7, 16]
    assert compiled.validation.size_ratio > 0
    # Registered, stored write-once, and nothing else stored.
    assert await mesh.compiled_of(artifact.id) == [compiled]
    assert {f.sha256 for f in compiled.files} == mesh.objects() - before
    # Signed by the mesh's signer over exactly the listed files, as stored: the bundle verifies over them.
    signer = ArtifactSigner(ArtifactSettings(), mesh.settings.home)
    assert compiled.signature.bundle and compiled.signature == signature_message(signer, compiled.signature.bundle)
    stored = tmp_path / "stored"
    for f in compiled.files:
        (stored / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mesh.settings.home / "objects" / "sha256" / f.sha256, stored / f.path)
    signer.verify_files(stored, [f.path for f in compiled.files], compiled.signature.bundle)
    (stored / "config.pbtxt").write_text((stored / "config.pbtxt").read_text() + "\n")
    with pytest.raises(IntegrityError, match="signature verification failed"):
        signer.verify_files(stored, [f.path for f in compiled.files], compiled.signature.bundle)
    # Lineage: a "compile" event from the artifact to the compiled output, tied to the operation.
    graph = await mesh.registry.GetLineage(registry_pb2.GetLineageRequest(
        entity=f"compiled:{compiled.id}", direction=registry_pb2.LINEAGE_DIRECTION_UPSTREAM),
        metadata=mesh.registry_metadata)
    compile_events = [e for e in graph.events if e.operation == "compile"]
    assert len(compile_events) == 1 and compile_events[0].operation_id == op.id
    assert list(compile_events[0].inputs) == [f"artifact:{artifact.id}"]
    assert list(compile_events[0].outputs) == [f"compiled:{compiled.id}"]
    # The Triton entry in the local repository.
    (entry,) = (mesh.settings.home / "triton" / "compiled").glob("test_lstm_onnx_*")
    assert check_entry(entry) == [] and (entry / "1" / "model.onnx").is_file()


async def test_list_compilers(mesh):
    response = await mesh.compiler.ListCompilers(compiler_pb2.ListCompilersRequest(), metadata=mesh.metadata)
    infos = {c.alias: c for c in response.compilers}
    assert set(infos) == {"onnx", "torchscript", "quantization", "tensorrt"}
    assert list(infos["torchscript"].targets) == ["pt", "pt2"] and infos["torchscript"].available
    assert not infos["tensorrt"].available and infos["tensorrt"].reason
    opset = next(p for p in infos["onnx"].parameters if p.name == "opset")
    assert (opset.type, opset.default_json) == ("int", "20")
    assert "torch" in infos["onnx"].tool_versions
    with pytest.raises(grpc.aio.AioRpcError) as err:  # needs the compiler.compile scope
        await mesh.compiler.ListCompilers(compiler_pb2.ListCompilersRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def field_of(err: grpc.aio.AioRpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(ERROR_FIELD_KEY)


async def test_bad_requests_get_their_status_and_start_nothing(mesh):
    _, artifact = await saved_model(mesh, "mlp")
    text = await mesh.save({"linear.weight": torch.zeros(3, 64), "linear.bias": torch.zeros(3)}, name="test/text",
                           architecture={"type": "hashed_bow_linear", "buckets": 64, "classes": 3})
    bare = await mesh.save({"w": torch.zeros(2)}, name="test/bare")
    cases = [
        (dict(artifact="sha256:" + "0" * 64, target="onnx"), grpc.StatusCode.NOT_FOUND, "artifact"),
        (dict(artifact="no/such/model", target="onnx"), grpc.StatusCode.NOT_FOUND, "artifact"),
        (dict(artifact="", target="onnx"), grpc.StatusCode.INVALID_ARGUMENT, "artifact"),
        (dict(artifact=artifact.id, target="tflite"), grpc.StatusCode.INVALID_ARGUMENT, "target"),
        (dict(artifact=artifact.id, target="onnx", kwargs={"opset_version": 20}), grpc.StatusCode.INVALID_ARGUMENT,
         "kwargs.opset_version"),
        (dict(artifact=artifact.id, target="onnx", max_batch_size=100_000), grpc.StatusCode.INVALID_ARGUMENT,
         "max_batch_size"),
        (dict(artifact=artifact.id, target="onnx", validation=compiler_pb2.ValidationPolicy(batch_sizes=[128])),
         grpc.StatusCode.INVALID_ARGUMENT, "validation.batch_sizes[0]"),
        (dict(artifact=artifact.id, target="tensorrt"), grpc.StatusCode.FAILED_PRECONDITION, "target"),
        (dict(artifact=text.id, target="onnx"), grpc.StatusCode.FAILED_PRECONDITION, "artifact"),
        (dict(artifact=bare.id, target="pt"), grpc.StatusCode.FAILED_PRECONDITION, "artifact"),
    ]
    for fields, code, field in cases:
        request = compiler_pb2.CompileRequest(**{k: v for k, v in fields.items() if k != "kwargs"})
        request.kwargs.update(fields.get("kwargs", {}))
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mesh.compiler.Compile(request, metadata=mesh.metadata)
        assert (err.value.code(), field_of(err.value)) == (code, field), (fields, err.value.details())
        assert time.perf_counter() - started < 2.0
    details = {}
    for fields, _, field in cases[7:9]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mesh.compiler.Compile(compiler_pb2.CompileRequest(**fields), metadata=mesh.metadata)
        details[field] = err.value.details()
    assert "unavailable here" in details["target"] and "input is text" in details["artifact"]
    listed = await mesh.operations.ListOperations(operations_pb2.ListOperationsRequest(kind="compile"),
                                                  metadata=mesh.metadata)
    assert list(listed.operations) == []


async def test_failures_inside_the_operation_leave_nothing(mesh, monkeypatch):
    _, artifact = await saved_model(mesh, "mlp")
    before = mesh.objects()
    tight = compiler_pb2.ValidationPolicy(tolerance_abs=1e-9, tolerance_rel=1e-9)
    op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(
        artifact=artifact.id, target="int8", validation=tight), metadata=mesh.metadata)
    final = (await mesh.watch(op.id))[-1]
    assert final.state == operations_pb2.OPERATION_STATE_FAILED
    assert (final.error.code, final.error.field) == ("FAILED_PRECONDITION", "validation")
    assert "max_abs_error" in final.error.message

    monkeypatch.setattr("services.compiler.pipeline.load_module", lambda architecture, state: DataDependent().eval())
    op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(artifact=artifact.id, target="onnx"),
                                     metadata=mesh.metadata)
    final = (await mesh.watch(op.id))[-1]
    assert (final.error.code, final.error.field) == ("FAILED_PRECONDITION", "artifact")
    assert "GuardOnDataDependentSymNode" in final.error.message and "Traceback" not in final.error.message

    assert await mesh.compiled_of(artifact.id) == []
    assert mesh.objects() == before
    assert not list((mesh.settings.home / "triton" / "compiled").glob("*_int8_*"))
    assert not list((mesh.settings.home / "cache" / "compiler").glob("compile-*"))  # work folders removed


async def test_cancel_during_export_stops_before_anything_is_stored(mesh):
    """The export runs in the compile lane's thread; a cancel lets it finish, then stops the operation."""
    _, artifact = await saved_model(mesh, "transformer")
    before = mesh.objects()
    op = await mesh.compiler.Compile(compiler_pb2.CompileRequest(artifact=artifact.id, target="onnx"),
                                     metadata=mesh.metadata)
    async for update in mesh.operations.WatchOperation(operations_pb2.WatchOperationRequest(id=op.id),
                                                       metadata=mesh.metadata, timeout=120):
        if update.progress.stage == "export":
            await mesh.operations.CancelOperation(operations_pb2.CancelOperationRequest(id=op.id),
                                                  metadata=mesh.metadata)
            break
    final = (await mesh.watch(op.id))[-1]
    assert final.state == operations_pb2.OPERATION_STATE_CANCELLED
    assert final.progress.stage == "export"
    assert await mesh.compiled_of(artifact.id) == [] and mesh.objects() == before
    assert not list((mesh.settings.home / "cache" / "compiler").glob("compile-*"))
