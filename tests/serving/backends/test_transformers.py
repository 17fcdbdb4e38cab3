"""The transformers backends on a tiny BERT built from a config: Analyzer and text Classifier against the
model's own forward pass, from the folder and from verified tensors; batching across requests through
a real session; what is refused (custom code, weights that do not fit, wrong task or interface, Triton)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.interfaces import Analyzer, CallOptions, Classifier
from services.serving.interfaces.backends import transformers_backend
from services.serving.interfaces.calls import AnalyzeCall
from services.serving.kserve.signatures import signature_for
from services.serving.loading.placement import ExecutorPlacement, TritonTarget
from services.serving.rules import RulePackLoader
from services.serving.sessions import SessionManager
from services.serving.triton.repository import ModelRepository
from tests.serving.conftest import HEADLINES, SENTIMENTS

PACKS = RulePackLoader(Path(__file__).resolve().parents[3] / "configs" / "rules")
TEXTS = [text for text, _ in HEADLINES]


def reference(folder: Path, texts: list[str]) -> np.ndarray:
    """Softmax of the model's logits, one text at a time (no padding): what the pipeline must give."""
    from transformers import BertForSequenceClassification, BertTokenizer

    model = BertForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = BertTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return np.stack([torch.softmax(model(**tokenizer(t, return_tensors="pt")).logits[0], -1).numpy()
                         for t in texts])


@pytest.fixture(scope="module")
def backends(tiny_bert):
    verified = load_file(str(tiny_bert / "model.safetensors"))
    return {
        "analyzer": transformers_backend("analyzer", artifact_id="sha256:b", metadata={}, folder=tiny_bert,
                                         state_dict=verified),
        "classifier": transformers_backend("classifier", artifact_id="sha256:b", metadata={}, folder=tiny_bert),
    }


async def test_analyzer_and_classifier_match_the_model(tiny_bert, backends):
    analyzer, classifier = backends["analyzer"], backends["classifier"]
    assert isinstance(analyzer, Analyzer) and isinstance(classifier, Classifier)
    expected = reference(tiny_bert, TEXTS)
    analyses = await analyzer.analyze(TEXTS)
    classes = await classifier.classify(TEXTS)
    for row, analysis, classification, (_, label) in zip(expected, analyses, classes, HEADLINES):
        assert analysis.label == classification.label == SENTIMENTS[label]  # trained: it tells them apart
        assert [analysis.scores[s] for s in SENTIMENTS] == pytest.approx(row.tolist(), abs=1e-5)
        assert list(classification.scores) == SENTIMENTS  # label-id order
        assert classification.probability == pytest.approx(float(row.max()), abs=1e-5)
        assert analysis.score == pytest.approx(float(row[2] - row[0]), abs=1e-5)  # positive - negative
    one = await analyzer.analyze(TEXTS[0])
    assert one[0].scores == pytest.approx(analyses[0].scores, abs=1e-6)
    assert analyzer.info.feature_names == ("token_count",)
    assert analyzer.preprocess(AnalyzeCall(["stocks rally", "x"])).view.values[:, 0].tolist() == [2.0, 1.0]


async def test_requests_are_batched_across_callers_through_a_session(backends, settings, lineage):
    manager = SessionManager(settings, lineage[0], rule_packs=PACKS)
    try:
        session = await manager.deploy(backends["analyzer"], "analyzer", session_id="bert")
        texts = TEXTS * 4
        answers = await asyncio.gather(*(session.infer(AnalyzeCall([t]), CallOptions()) for t in texts))
        direct = await backends["analyzer"].analyze(texts)
        for answer, alone in zip(answers, direct):
            assert answer.result[0].label == alone.label
            assert answer.result[0].scores == pytest.approx(alone.scores, abs=1e-5)
        assert max(a.meta.batch_size for a in answers) > 1  # the pipeline ran several callers' texts at once
    finally:
        await manager.close()


async def test_bad_calls_are_invalid_arguments(backends):
    with pytest.raises(InvalidArgument) as rows:
        await backends["classifier"].classify([[1.0, 2.0]])
    assert rows.value.field == "rows"
    with pytest.raises(InvalidArgument) as empty:
        await backends["analyzer"].analyze([])
    assert empty.value.field == "texts"
    with pytest.raises(InvalidArgument, match="serves \\['analyzer', 'classifier'\\]"):
        transformers_backend("predictor", artifact_id="sha256:b", metadata={}, folder=Path("/nonexistent"))


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_custom_code_misfit_weights_and_other_tasks_are_refused(tiny_bert, tmp_path):
    folder = _copy(tiny_bert, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "evil.Config"}}))
    with pytest.raises(FailedPrecondition, match="custom code"):
        transformers_backend("analyzer", artifact_id="sha256:b", metadata={}, folder=folder)
    (folder / "config.json").write_text(json.dumps(config))

    weights = load_file(str(folder / "model.safetensors"))
    dropped = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    with pytest.raises(FailedPrecondition, match="weights do not fit"):
        transformers_backend("analyzer", artifact_id="sha256:b", metadata={}, folder=folder, state_dict=dropped)
    (folder / "model.safetensors").unlink()
    save_file({**weights, "extra.weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(FailedPrecondition, match="weights do not fit"):
        transformers_backend("analyzer", artifact_id="sha256:b", metadata={}, folder=folder)

    with pytest.raises(FailedPrecondition, match="not 'token-classification'"):
        transformers_backend("analyzer", artifact_id="sha256:b", metadata={"task": "token-classification"},
                             folder=tiny_bert)
    with pytest.raises(FailedPrecondition, match="differ from config.json"):
        transformers_backend("analyzer", artifact_id="sha256:b", metadata={"class_labels": ["a", "b", "c"]},
                             folder=tiny_bert)


def test_kserve_sees_text_inputs(backends):
    for kind in ("analyzer", "classifier"):
        signature = signature_for(backends[kind])
        assert [t.name for t in signature.inputs] == ["texts"]
        assert signature.outputs[-1].shape == (-1, len(SENTIMENTS))


def test_a_pipeline_runs_in_process_even_when_triton_is_there(backends, tmp_path):
    placement = ExecutorPlacement("auto", TritonTarget("127.0.0.1:1", ModelRepository(tmp_path)))
    assert placement.choose("auto", backends["analyzer"]) == "in_process"
    with pytest.raises(FailedPrecondition, match="transformers pipeline runs in-process") as refused:
        placement.choose("triton", backends["analyzer"])
    assert refused.value.field == "executor"
