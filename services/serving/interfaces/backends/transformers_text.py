"""Transformers text-classification backends: an Analyzer (sentiment) and a text Classifier over a
`transformers` pipeline built from a verified local snapshot (framework "transformers" artifacts).

Building (`load_text_pipeline`), nothing fetched and no code run from the artifact: config.json through
AutoConfig with local files only and trust_remote_code off (a config that ships code, `auto_map`, is
refused first) -> the library's own sequence-classification class for that config type -> its weights
from `state_dict`, the tensors the LoadHandler built from the verified bytes (so the model is exactly
what was verified, not a later read of the file; without one, the folder's safetensors, never pickle)
-> the tokenizer from the folder -> pipeline("text-classification", model, tokenizer). Weights that do
not fit the config (missing, unexpected, mis-shaped) are refused, never left randomly initialised.

Batching: preprocess (per request, on the loop) puts the texts in an object array `text` and counts
their tokens for the rules (`token_count`) with a tokenizer instance of its own: a fast tokenizer is
not safe to share between threads while another call sets truncation. The batch function runs the
pipeline over every text of the batch at once -> `scores` (n, labels) in label-id order. Texts longer
than `max_length` tokens are truncated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.interfaces.backends.base import Prepared
from services.serving.interfaces.backends.features import text_list
from services.serving.interfaces.backends.tabular import ranked_classifications
from services.serving.interfaces.backends.text import TextBackend, analyses
from services.serving.interfaces.base import Analyzer, Classifier
from services.serving.interfaces.calls import AnalyzeCall, ClassifyCall
from services.serving.interfaces.results import Analysis, Classification
from services.serving.rules.view import FeatureView, ModelInfo

TASKS = ("text-classification", "sentiment-analysis")  # the pipeline's task and its alias
DEFAULT_MAX_LENGTH = 512
_UNBOUNDED = 1_000_000  # tokenizers without a limit report ~1e30 as model_max_length


class TextPipeline:
    """The runtime of the transformers backends: texts -> label probabilities, and token counts."""

    uses_torch = True
    in_process_only = "a transformers pipeline runs in-process: tokenisation is part of its batch function"

    def __init__(self, pipeline: Any, counter: Any, labels: tuple[str, ...], max_length: int) -> None:
        self.pipeline = pipeline
        self.counter = counter
        self.labels = labels
        self.max_length = max_length
        self._index = {label: i for i, label in enumerate(labels)}
        self._counting = getattr(counter, "backend_tokenizer", None)  # the Rust tokenizer: no length warnings
        if self._counting is not None:  # a snapshot's tokenizer.json may pad or truncate: counts need neither
            self._counting.no_padding()
            self._counting.no_truncation()

    def token_counts(self, texts: list[str]) -> np.ndarray:
        if self._counting is not None:
            lengths = (len(e.ids) for e in self._counting.encode_batch(texts, add_special_tokens=False))
        else:
            lengths = (len(row) for row in self.counter(texts, add_special_tokens=False)["input_ids"])
        return np.fromiter(lengths, dtype=np.float64, count=len(texts))

    def scores(self, texts: list[str]) -> np.ndarray:
        results = self.pipeline(texts, top_k=None, batch_size=len(texts), truncation=True,
                                max_length=self.max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for row, items in enumerate(results):
            for item in items:
                out[row, self._index[item["label"]]] = item["score"]
        return out


def _refuse(what: str, exc: BaseException) -> FailedPrecondition:
    text = str(exc).strip().splitlines()
    return FailedPrecondition(f"{what}: {type(exc).__name__}: {text[0][:300] if text else ''}", field="model")


def _labels(config: Any) -> tuple[str, ...]:
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    labels = tuple(id2label[i] for i in sorted(id2label))
    if not labels or sorted(id2label) != list(range(len(labels))) or len(set(labels)) != len(labels):
        raise FailedPrecondition("config.json needs id2label with one unique label per class id 0..n-1",
                                 field="model")
    return labels


def _max_length(config: Any, tokenizer: Any, metadata: Mapping[str, Any]) -> int:
    if isinstance(metadata.get("max_length"), (int, float)) and metadata["max_length"] >= 1:
        return int(metadata["max_length"])
    limits = [int(tokenizer.model_max_length)] if 0 < (tokenizer.model_max_length or 0) < _UNBOUNDED else []
    if isinstance(getattr(config, "max_position_embeddings", None), int):
        limits.append(config.max_position_embeddings)
    return min(limits) if limits else DEFAULT_MAX_LENGTH


def load_text_pipeline(folder: Path | str, *, state_dict: Mapping[str, Any] | None = None,
                       metadata: Mapping[str, Any] | None = None) -> TextPipeline:
    """A text-classification pipeline from a verified folder (blocking; seconds for large models)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, pipeline
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    folder, metadata = Path(folder), metadata or {}
    task = metadata.get("task") or TASKS[0]
    if task not in TASKS:
        raise FailedPrecondition(f"serving runs transformers {list(TASKS)} models, not {task!r}", field="model")
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise _refuse("no readable config.json in the artifact", exc) from None
    if not isinstance(raw, dict) or "auto_map" in raw:
        raise FailedPrecondition("config.json names custom code (auto_map); serving never runs code shipped "
                                 "with an artifact", field="model")
    local = {"local_files_only": True, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(folder, **local)
        model_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    except (KeyError, ValueError, OSError) as exc:
        raise _refuse("not a transformers sequence-classification config", exc) from None
    labels = _labels(config)
    declared = metadata.get("class_labels")
    if isinstance(declared, list) and [str(x) for x in declared] != list(labels):
        raise FailedPrecondition(f"metadata.class_labels {declared} differ from config.json's id2label {list(labels)}",
                                 field="model")
    try:
        if state_dict is not None:
            model, info = model_class.from_pretrained(None, config=config, state_dict=dict(state_dict),
                                                      dtype=torch.float32, output_loading_info=True)
        else:
            model, info = model_class.from_pretrained(folder, config=config, use_safetensors=True,
                                                      local_files_only=True, dtype=torch.float32,
                                                      output_loading_info=True)
        tokenizer, counter = (AutoTokenizer.from_pretrained(folder, **local) for _ in range(2))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise _refuse("the transformers model did not load", exc) from None
    misfits = {k: sorted(v)[:3] for k, v in info.items() if k != "error_msgs" and v}
    if misfits or info.get("error_msgs"):
        raise FailedPrecondition(f"weights do not fit config.json: {misfits or info['error_msgs'][:1]}", field="model")
    pipe = pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")
    return TextPipeline(pipe, counter, labels, _max_length(config, tokenizer, metadata))


class TransformersTextBackend(TextBackend):
    def __init__(self, runtime: TextPipeline, *, artifact_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(artifact_id=artifact_id, metadata=metadata)
        self.runtime = runtime
        self.labels = runtime.labels

    @property
    def uses_torch(self) -> bool:  # type: ignore[override]
        return self.runtime.uses_torch

    @cached_property
    def info(self) -> ModelInfo:
        return ModelInfo(("token_count",), self.feature_stats(), 1)

    def _prepare_texts(self, texts: Any, field: str) -> Prepared:
        texts = text_list(texts, field=field)
        holder = np.empty(len(texts), dtype=object)
        holder[:] = texts
        counts = self.runtime.token_counts(texts)
        return Prepared({"text": holder}, len(texts), FeatureView(counts[:, None], ("token_count",), field))

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"scores": self.runtime.scores(batch["text"].tolist())}


class TransformersAnalyzer(TransformersTextBackend, Analyzer):
    interface = "analyzer"

    def preprocess(self, call: AnalyzeCall) -> Prepared:
        return self._prepare_texts(call.texts, "texts")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Analysis]:
        return analyses(outputs["scores"], self.labels)

    async def analyze(self, texts, *, options=None) -> list[Analysis]:
        return await self.direct(AnalyzeCall(texts))


class TransformersClassifier(TransformersTextBackend, Classifier):
    interface = "classifier"

    def preprocess(self, call: ClassifyCall) -> Prepared:
        data = call.data
        if not isinstance(data, str) and isinstance(data, Sequence) and data and not isinstance(data[0], str):
            raise InvalidArgument("this classifier takes texts, not feature rows", field="rows")
        return self._prepare_texts(call.data, "texts")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> list[Classification]:
        return ranked_classifications(outputs["scores"], self.labels)

    async def classify(self, data, *, options=None) -> list[Classification]:
        return await self.direct(ClassifyCall(data))


TRANSFORMERS_BACKENDS: dict[str, type[TransformersTextBackend]] = {
    "analyzer": TransformersAnalyzer, "classifier": TransformersClassifier,
}
