"""The new artifact kinds end to end against a real serving service, called through the client-side
interfaces: a transformers snapshot (saved signed by SnapshotSaver, registered, deployed as an Analyzer
and a Classifier, rules on its token counts, a tampered cached file refused), and the compiler's
TorchScript and AOTInductor outputs deployed as `compiled:` references."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from mlmesh.v1 import common_pb2, serving_pb2
from services.core.artifacts.signing import signature_message
from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.client import RemoteAnalyzer, RemoteClassifier, RemotePredictor
from services.serving.interfaces.backends import torch_backend, transformers_backend
from services.serving.loading import SnapshotSaver
from services.serving.loading.metadata import serving_metadata
from tests.serving.backends.models import MAX_BATCH
from tests.serving.client.conftest import operator
from tests.serving.conftest import HEADLINES, SENTIMENTS

pytestmark = pytest.mark.asyncio(loop_scope="session")

TEXTS = [text for text, _ in HEADLINES]
TEXT_STATS = {"token_count": {"mean": [5.0], "std": [2.0]}}


async def _save_snapshot(publisher, folder, metadata, name):
    with operator():
        saved = await SnapshotSaver.from_toolkit(publisher.kit).save(folder, metadata=metadata,
                                                                    source="test://tiny-bert")
    artifact = await publisher.client.register_artifact(
        saved.manifest, name=name, aliases=("prod",), signature=signature_message(publisher.kit.signer, saved.signature))
    return saved, artifact


async def test_a_transformers_snapshot_is_served_as_analyzer_and_classifier(client, publisher, tiny_bert):
    saved, artifact = await _save_snapshot(publisher, tiny_bert, {"interface": "analyzer", "text_stats": TEXT_STATS},
                                           "tiny-bert")
    paths = {f.path for f in saved.manifest.files}
    assert saved.manifest.framework == "transformers" and saved.manifest.format == "safetensors"
    assert {"config.json", "model.safetensors", "model.safetensors.sha256", "tokenizer.json"} <= paths
    assert saved.manifest.metadata["class_labels"] == SENTIMENTS
    assert saved.folder == publisher.kit.loader.folder_for(artifact.id)  # settled in the artifact cache

    session = await client.deploy("tiny-bert@prod", session_id="bert-analyzer")  # interface from the metadata
    assert session.executor == serving_pb2.EXECUTOR_KIND_IN_PROCESS and session.artifact_id == artifact.id
    metadata = serving_metadata(saved.manifest.metadata)
    local = transformers_backend("analyzer", artifact_id=artifact.id, metadata=metadata, folder=tiny_bert)
    analyzer = RemoteAnalyzer("bert-analyzer", client)
    answers = await asyncio.gather(*(analyzer.analyze(text) for text in TEXTS * 3))  # batched across callers
    for answer, expected, (_, label) in zip(answers, await local.analyze(TEXTS * 3), HEADLINES * 3):
        assert answer[0].label == expected.label == SENTIMENTS[label]
        assert answer[0].scores == pytest.approx(expected.scores, abs=1e-5)
        assert answer[0].score == pytest.approx(expected.score, abs=1e-5)
    with pytest.raises(InvalidArgument, match="OODGuard: feature 'token_count'") as ood:
        await analyzer.analyze(["stocks rally " * 20])
    assert ood.value.field == "texts[0]"

    await client.deploy(artifact.id, "classifier", session_id="bert-classifier")
    classes = await RemoteClassifier("bert-classifier", client).classify(TEXTS)
    assert [c.label for c in classes] == [SENTIMENTS[label] for _, label in HEADLINES]
    assert list(classes[0].scores) == SENTIMENTS

    graph = await publisher.client.get_lineage("session:bert-analyzer")
    assert any(f"artifact:{artifact.id}" in e.inputs for e in graph.events if e.operation == "deploy")


async def test_a_snapshot_without_interface_needs_one_and_a_tampered_file_is_refused(client, publisher, tiny_bert,
                                                                                      tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_bert, pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with operator(), pytest.raises(FailedPrecondition, match="pytorch_model.bin: pickle weights and code"):
        await SnapshotSaver.from_toolkit(publisher.kit).save(pickled)

    _, artifact = await _save_snapshot(publisher, tiny_bert, {}, "tiny-bert-plain")
    with pytest.raises(InvalidArgument, match="give the interface") as missing:
        await client.deploy(artifact.id)
    assert missing.value.field == "interface"
    await client.deploy(artifact.id, "analyzer", session_id="bert-plain")

    tokenizer = publisher.kit.loader.folder_for(artifact.id) / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[UNX]"'))
    with pytest.raises(FailedPrecondition, match="tokenizer.json"):  # re-hashed before use, on a cache hit too
        await client.deploy(artifact.id, "analyzer", session_id="bert-tampered")
    with pytest.raises(FailedPrecondition, match="tokenizer.json"):  # the loader removes the bad copy ...
        await client.deploy(artifact.id, "analyzer", session_id="bert-tampered")
    session = await client.deploy(artifact.id, "analyzer", session_id="bert-tampered")  # ... and fetches it again
    assert session.state == serving_pb2.SESSION_STATE_READY


async def _register(publisher, source_id, output):
    with operator():
        for f in output.compiled.files:
            await publisher.kit.store.put_file(output.compiled.entry / f.path, expected_sha256=f.sha256,
                                               lineage={"artifact_id": source_id, "path": f.path})
    return await publisher.client.register_compiled_artifact(output.record(source_id, publisher.kit.signer))


async def test_compiled_torchscript_and_aoti_outputs_are_served(client, publisher, published, alpha_predictor,
                                                                compile_model):
    metadata, weights = alpha_predictor
    eager = torch_backend("predictor", artifact_id="sha256:e", metadata=metadata, state_dict=weights)
    rows = np.random.default_rng(9).normal([0.0, 0.0, 0.15, 50.0], [0.01, 0.3, 0.05, 8.0], (MAX_BATCH + 4, 4)).tolist()
    expected = [p.value for p in await eager.predict(rows)]
    for target, platform in (("pt", "pytorch_libtorch"), ("pt2", "torch_aoti")):
        record = await _register(publisher, published["alpha"], compile_model("alpha", target))
        assert record.triton_platform == platform
        session = await client.deploy(f"compiled:{record.id}", session_id=f"compiled-{target}")  # auto
        assert session.executor == serving_pb2.EXECUTOR_KIND_IN_PROCESS
        assert session.interface == common_pb2.INTERFACE_KIND_PREDICTOR  # the source artifact's interface
        got = await RemotePredictor(f"compiled-{target}", client).predict(rows)  # past the .pt2's batch range
        np.testing.assert_allclose([p.value for p in got], expected, rtol=1e-4, atol=1e-5)


async def test_compiled_outputs_serving_cannot_run_are_refused(client, publisher, published, compile_model):
    output = compile_model("alpha", "pt")
    record = output.record(published["alpha"], publisher.kit.signer)
    plan = record.files[-1]
    plan.path, record.sha256, record.target, record.triton_platform = "1/model.plan", plan.sha256, "plan", "tensorrt_plan"
    registered = await publisher.client.register_compiled_artifact(record)
    with pytest.raises(FailedPrecondition, match="not servable here") as refused:
        await client.deploy(f"compiled:{registered.id}")
    assert refused.value.field == "model"
