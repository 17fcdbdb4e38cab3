"""Hashed bag-of-words text models: an Analyzer (sentiment) and a text Classifier.

Texts are hashed on the event loop (preprocess), so the batch function is the model alone and a
Triton executor can run it: `input` (n, buckets) float32 -> `output` (n, classes) logits. The view the
rules check is each text's token count (the artifact records its training statistics as `token_count`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.core.errors import InvalidArgument
from services.core.models.architectures import TOKEN
from services.serving.interfaces.backends.base import ModelBackend, Prepared
from services.serving.interfaces.backends.features import softmax, text_list
from services.serving.interfaces.backends.runtimes import Runtime
from services.serving.interfaces.backends.tabular import classifications
from services.serving.interfaces.base import Analyzer, Classifier
from services.serving.interfaces.calls import AnalyzeCall, ClassifyCall
from services.serving.interfaces.results import Analysis, Classification
from services.serving.rules.view import FeatureView, ModelInfo


def hashed_bags(texts: list[str], buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Token counts hashed into buckets (crc32 % buckets), L1-normalised per text, as
    services.core.models.architectures.hash_texts computes them; and each text's token count."""
    bags = np.zeros((len(texts), buckets), dtype=np.float32)
    counts = np.zeros(len(texts))
    for row, text in enumerate(texts):
        tokens = TOKEN.findall(text.lower())
        if tokens:
            index = np.fromiter((zlib.crc32(t.encode()) % buckets for t in tokens), dtype=np.int64, count=len(tokens))
            bags[row] = np.bincount(index, minlength=buckets) / len(tokens)
            counts[row] = len(tokens)
    return bags, counts


def analyses(probabilities: np.ndarray, labels: tuple[str, ...]) -> list[Analysis]:
    """Probabilities (texts, labels) -> sentiment: the most probable label, and a signed score
    p(positive) - p(negative) when the labels include both (in any case), else the label's probability."""
    lowered = [label.lower() for label in labels]
    signed = "positive" in lowered and "negative" in lowered
    pos, neg = (lowered.index("positive"), lowered.index("negative")) if signed else (0, 0)
    results = []
    for row in probabilities.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        score = row[pos] - row[neg] if signed else row[best]
        results.append(Analysis(labels[best], score, dict(zip(labels, row))))
    return results


class TextBackend(ModelBackend):
    """Any backend whose requests are texts and whose outputs are scores over `labels` (the hashed bags
    below, transformers pipelines): adapters that tell text input from feature rows check for this class."""

    labels: tuple[str, ...]


class HashedTextBackend(TextBackend):
    def __init__(self, runtime: Runtime, *, artifact_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(artifact_id=artifact_id, metadata=metadata)
        self.runtime = runtime
        arch = self.architecture
        tokenizer = arch.get("tokenizer", TOKEN.pattern)
        if tokenizer != TOKEN.pattern or arch.get("hash", "crc32") != "crc32":
            raise InvalidArgument(f"unsupported tokenizer or hash: {tokenizer!r}", field="metadata.architecture")
        self.buckets = int(arch.get("buckets", 0))
        if self.buckets <= 0:
            raise InvalidArgument("must be a positive integer", field="metadata.architecture.buckets")
        labels = self.metadata.get("class_labels")
        if not isinstance(labels, list) or not labels:
            raise InvalidArgument("a text model needs metadata.class_labels", field="metadata.class_labels")
        self.labels = tuple(str(label) for label in labels)

    @property
    def uses_torch(self) -> bool:  # type: ignore[override]
        return self.runtime.uses_torch

    @cached_property
    def info(self) -> ModelInfo:
        return ModelInfo(("token_count",), self.feature_stats(), 1)

    def _prepare_texts(self, texts: Any, field: str) -> Prepared:
        texts = text_list(texts, field=field)
        bags, counts = hashed_bags(texts, self.buckets)
        return Prepared({"input": bags}, len(texts), FeatureView(counts[:, None], ("token_count",), field))

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"output": np.asarray(self.runtime(batch["input"]), dtype=np.float32)}


class TextAnalyzer(HashedTextBackend, Analyzer):
    """Sentiment over hashed bags of words (see `analyses`)."""

    interface = "analyzer"

    def preprocess(self, call: AnalyzeCall) -> Prepared:
        return self._prepare_texts(call.texts, "texts")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Analysis]:
        return analyses(softmax(outputs["output"].astype(np.float64)), self.labels)

    async def analyze(self, texts, *, options=None) -> list[Analysis]:
        return await self.direct(AnalyzeCall(texts))


class TextClassifier(HashedTextBackend, Classifier):
    interface = "classifier"

    def preprocess(self, call: ClassifyCall) -> Prepared:
        return self._prepare_texts(call.data, "texts")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Classification]:
        return classifications(outputs["output"], self.labels)

    async def classify(self, data, *, options=None) -> list[Classification]:
        return await self.direct(ClassifyCall(data))
