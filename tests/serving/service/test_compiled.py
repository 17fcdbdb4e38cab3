"""A compiled artifact ("compiled:sha256:<hex>"): an ONNX graph stored and registered as the compiler does
(Triton entry layout, INPUT__0 / OUTPUT__0), served in-process with the source artifact's metadata."""

from __future__ import annotations

import time
import warnings

import grpc
import pytest
import torch

from mlmesh.v1 import common_pb2, registry_pb2, registry_pb2_grpc, serving_pb2
from services.core.artifacts.objectstore import sha256_file
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.principal import Principal, reset_principal, set_principal
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


async def test_a_compiled_onnx_artifact_is_served(stub, models, publisher, registry, issuer, tmp_path):
    alpha = models["alpha_bull"]
    _export(alpha.trained.module, tmp_path)
    token = set_principal(Principal(SUBJECT, frozenset(ALL_SCOPES), "registry", "t", time.time() + 3600))
    try:
        files = []
        for path in ("config.pbtxt", "1/model.onnx"):
            stored = await publisher.kit.store.put_file(tmp_path / path, lineage={"artifact_id": alpha.artifact_id})
            files.append(common_pb2.ArtifactFile(path=path, sha256=stored.sha256, size=stored.size))
    finally:
        reset_principal(token)
    onnx_sha = sha256_file(tmp_path / "1" / "model.onnx")[0]
    record = common_pb2.CompiledArtifact(source_artifact_id=alpha.artifact_id, compiler="onnx", target="onnx",
                                         files=files, sha256=onnx_sha, triton_platform="onnxruntime_onnx")
    async with grpc.aio.insecure_channel(registry.address) as channel:
        compiled = await registry_pb2_grpc.RegistryStub(channel).RegisterCompiledArtifact(
            registry_pb2.RegisterCompiledArtifactRequest(compiled=record),
            metadata=(("authorization", f"Bearer {issuer.mint(SUBJECT, 'registry', ALL_SCOPES)}"),))

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
