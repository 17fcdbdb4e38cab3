"""A compiled artifact ("compiled:sha256:<hex>"): an ONNX graph stored and registered as the compiler does
(Triton entry layout, INPUT__0 / OUTPUT__0), served in-process with the source artifact's metadata."""

from __future__ import annotations

import copy
import time
import warnings

import grpc
import pytest
import torch

from mlmesh.v1 import common_pb2, registry_pb2, registry_pb2_grpc, serving_pb2
from services.core.artifacts.objectstore import sha256_file
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.db.schema import ml_compiled_artifacts
from services.core.settings import ArtifactSettings
from services.serving.interfaces.calls import PredictCall
from tests.serving.service.conftest import SUBJECT, error_field
from tests.serving.service.test_typed import market_rows, rows_msg

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _export(module: torch.nn.Module, folder) -> None:
    (folder / "1").mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and fast
        torch.onnx.export(module, (torch.randn(2, 6),), str(folder / "1" / "model.onnx"), input_names=["INPUT__0"],
                          output_names=["OUTPUT__0"], dynamic_axes={"INPUT__0": {0: "b"}, "OUTPUT__0": {0: "b"}},
                          dynamo=False, external_data=False)
    (folder / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\nmax_batch_size: 32\n')


async def _store_and_register(publisher, registry, issuer, folder, source_id, *, signer) -> common_pb2.CompiledArtifact:
    """The compiler's steps by hand: store the entry's files, sign exactly them with `signer`, register."""
    token = set_principal(Principal(SUBJECT, frozenset(ALL_SCOPES), "registry", "t", time.time() + 3600))
    try:
        files = []
        for path in ("config.pbtxt", "1/model.onnx"):
            stored = await publisher.kit.store.put_file(folder / path, lineage={"artifact_id": source_id})
            files.append(common_pb2.ArtifactFile(path=path, sha256=stored.sha256, size=stored.size))
    finally:
        reset_principal(token)
    onnx_sha = sha256_file(folder / "1" / "model.onnx")[0]
    bundle = signer.sign_files(folder, [f.path for f in files])
    record = common_pb2.CompiledArtifact(source_artifact_id=source_id, compiler="onnx", target="onnx",
                                         files=files, sha256=onnx_sha, triton_platform="onnxruntime_onnx",
                                         signature=signature_message(signer, bundle))
    async with grpc.aio.insecure_channel(registry.address) as channel:
        return await registry_pb2_grpc.RegistryStub(channel).RegisterCompiledArtifact(
            registry_pb2.RegisterCompiledArtifactRequest(compiled=record),
            metadata=(("authorization", f"Bearer {issuer.mint(SUBJECT, 'registry', ALL_SCOPES)}"),))


async def test_a_compiled_onnx_artifact_is_served(stub, models, publisher, registry, issuer, tmp_path):
    alpha = models["alpha_bull"]
    _export(alpha.trained.module, tmp_path)
    compiled = await _store_and_register(publisher, registry, issuer, tmp_path, alpha.artifact_id,
                                         signer=publisher.kit.signer)  # the mesh's key, as the compiler signs

    session = await stub.deploy(f"compiled:{compiled.id}", session_id="compiled-alpha")
    assert session.artifact_id == f"compiled:{compiled.id}" and session.model == f"compiled:{compiled.id}"
    rows = market_rows(4, seed=31, regime=0)
    answer = await stub.Predict(serving_pb2.PredictRequest(session_id="compiled-alpha", rows=rows_msg(rows)))
    expected = await alpha.backend().direct(PredictCall(rows))
    assert [p.values[0] for p in answer.predictions] == pytest.approx([p.values[0] for p in expected], rel=1e-4,
                                                                      abs=1e-6)
    graph = await publisher.client.get_lineage("session:compiled-alpha")
    assert any(f"compiled:{compiled.id}" in e.inputs for e in graph.events if e.operation == "deploy")

    # a compiled output whose bytes changed after registration is refused
    cached = next((publisher.kit.loader.cache_root / "compiled").rglob("model.onnx"))
    blob = bytearray(cached.read_bytes())
    blob[-1] ^= 0xFF
    cached.write_bytes(bytes(blob))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.deploy(f"compiled:{compiled.id}")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_field(refused.value) == "model"


async def _set_signature(registry, compiled_id: str, bundle: bytes | None) -> None:
    """What someone who can write the registry's database does to a record's signature."""
    table = ml_compiled_artifacts
    async with registry.engine.begin() as conn:
        await conn.execute(table.update().where(table.c.id == compiled_id).values(signature_bundle=bundle))


async def _refused(stub, compiled_id: str, session_id: str, match: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.deploy(f"compiled:{compiled_id}", session_id=session_id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_field(refused.value) == "model"
    assert f"compiled artifact {compiled_id}" in refused.value.details() and match in refused.value.details()
    listed = await stub.ListSessions(serving_pb2.ListSessionsRequest())
    assert session_id not in {s.id for s in listed.sessions}  # nothing loaded


async def test_a_consistently_forged_compiled_artifact_is_refused(stub, models, publisher, registry, issuer,
                                                                 tmp_path):
    """Record and object-store files replaced together, hashes and record id recomputed: only the signature
    tells the forgery apart, whether signed by another key, not signed, or carrying a genuine bundle."""
    bull = models["alpha_bull"]
    tampered = copy.deepcopy(bull.trained.module)
    with torch.no_grad():
        for parameter in tampered.parameters():
            parameter.add_(0.5)
    genuine_folder, forged_folder = tmp_path / "genuine", tmp_path / "forged"
    _export(bull.trained.module, genuine_folder)
    genuine = await _store_and_register(publisher, registry, issuer, genuine_folder, bull.artifact_id,
                                        signer=publisher.kit.signer)
    _export(tampered, forged_folder)  # other weights, passed off as a compile of alpha_bull
    attacker = ArtifactSigner(ArtifactSettings(), tmp_path / "attacker-home")
    forged = await _store_and_register(publisher, registry, issuer, forged_folder, bull.artifact_id, signer=attacker)
    assert forged.id != genuine.id and forged.signature.bundle

    await _refused(stub, forged.id, "forged-other-key", "signature verification failed")
    await _set_signature(registry, forged.id, None)  # written into the database unsigned
    await _refused(stub, forged.id, "forged-unsigned", "no signature bundle")
    await _set_signature(registry, forged.id, genuine.signature.bundle)  # a genuine bundle of other files
    await _refused(stub, forged.id, "forged-borrowed", "signature verification failed")

    session = await stub.deploy(f"compiled:{genuine.id}", session_id="genuine-alpha")  # the genuine one deploys
    assert session.state == serving_pb2.SESSION_STATE_READY and session.artifact_id == f"compiled:{genuine.id}"
    # A file the record does not list, dropped beside the verified ones, is removed before the next deploy.
    stray = publisher.kit.loader.cache_root / "compiled" / genuine.id.removeprefix("sha256:") / "1" / "model.onnx.data"
    stray.write_bytes(b"not verified")
    await stub.deploy(f"compiled:{genuine.id}", session_id="genuine-alpha-again")
    assert not stray.exists()
