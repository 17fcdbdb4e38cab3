"""A text Classifier and an Analyzer over an imported model with a string input (e.g. a scikit-learn
TfidfVectorizer + classifier pipeline converted to ONNX): the texts go in as the model's own string
tensor ([-1] or [-1, 1]), its probability tensor comes back. The rules see each text's token count
(`token_count`, whitespace-separated), the column text models record statistics for.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from services.serving.interfaces.backends.base import Prepared
from services.serving.interfaces.backends.features import text_list
from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.imported.signature import ModelSignature
from services.serving.interfaces.backends.imported.tabular import ClassOutputs
from services.serving.interfaces.backends.text import TextBackend, analyses
from services.serving.interfaces.base import Analyzer, Classifier
from services.serving.interfaces.calls import AnalyzeCall, ClassifyCall
from services.serving.interfaces.results import Analysis, Classification
from services.serving.rules.view import FeatureView, ModelInfo

TOKEN_COLUMN = "token_count"


class ImportedTextBackend(ImportedBackend, TextBackend):
    def __init__(self, runtime: Any, signature: ModelSignature, *, artifact_id: str,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.classes = ClassOutputs(metadata or {}, signature)
        super().__init__(runtime, signature, artifact_id=artifact_id, metadata=metadata)
        self.labels = self.classes.labels

    def output_tensors(self) -> tuple:
        return self.classes.tensors()

    @cached_property
    def info(self) -> ModelInfo:
        return ModelInfo((TOKEN_COLUMN,), self.feature_stats(), 1)

    def _prepare_texts(self, texts: Any, field: str) -> Prepared:
        texts = text_list(texts, field=field)
        holder = np.empty(len(texts), dtype=object)
        holder[:] = texts
        if len(self.input.shape) == 2:
            holder = holder.reshape(-1, 1)
        counts = np.fromiter((len(t.split()) for t in texts), dtype=np.float64, count=len(texts))
        return Prepared({self.input.name: holder}, len(texts), FeatureView(counts[:, None], (TOKEN_COLUMN,), field))


class ImportedTextClassifier(ImportedTextBackend, Classifier):
    interface = "classifier"

    def preprocess(self, call: ClassifyCall) -> Prepared:
        return self._prepare_texts(call.data, "texts")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Classification]:
        return self.classes.ranked(outputs, prepared.rows)

    async def classify(self, data, *, options=None) -> list[Classification]:
        return await self.direct(ClassifyCall(data))


class ImportedTextAnalyzer(ImportedTextBackend, Analyzer):
    interface = "analyzer"

    def preprocess(self, call: AnalyzeCall) -> Prepared:
        return self._prepare_texts(call.texts, "texts")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Analysis]:
        return analyses(self.classes.probabilities(outputs, prepared.rows), self.labels)

    async def analyze(self, texts, *, options=None) -> list[Analysis]:
        return await self.direct(AnalyzeCall(texts))
