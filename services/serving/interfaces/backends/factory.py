"""Backends from an artifact: its metadata (architecture, feature names, labels, statistics) and either
a torch state dict (rebuilt with services.core.models.architectures.load_module), a compiled output
(.onnx, TorchScript .pt, AOTInductor .pt2) of such an artifact, a transformers snapshot, or an imported
model (ONNX, XGBoost, LightGBM: `imported_backend`, whose table is by signature kind, not architecture)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.core.errors import InvalidArgument
from services.core.models.architectures import load_module
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.backends.compiled import compiled_runtime
from services.serving.interfaces.backends.forecaster import WindowForecaster
from services.serving.interfaces.backends.imported import IMPORTED_BACKENDS, imported_backend, imported_interfaces
from services.serving.interfaces.backends.runtimes import OnnxRuntime, Runtime, runtime_for_module
from services.serving.interfaces.backends.segmenter import ChangePointSegmenter
from services.serving.interfaces.backends.tabular import TabularClassifier, TabularPredictor
from services.serving.interfaces.backends.text import TextAnalyzer, TextClassifier
from services.serving.interfaces.backends.transformers_text import TRANSFORMERS_BACKENDS, load_text_pipeline

# (architecture type, interface) -> the backend that serves it.
BACKENDS: dict[tuple[str, str], type[ModelBackend]] = {
    ("mlp", "predictor"): TabularPredictor,
    ("mlp", "classifier"): TabularClassifier,
    ("lstm_forecaster", "forecaster"): WindowForecaster,
    ("hashed_bow_linear", "analyzer"): TextAnalyzer,
    ("hashed_bow_linear", "classifier"): TextClassifier,
}


__all__ = ["BACKENDS", "IMPORTED_BACKENDS", "backend_for", "compiled_backend", "imported_backend",
           "imported_interfaces", "onnx_backend", "segmenter_backend", "torch_backend", "transformers_backend"]


def _backend_class(interface: str, metadata: Mapping[str, Any]) -> type[ModelBackend]:
    architecture = metadata.get("architecture") or {}
    kind = architecture.get("type") if isinstance(architecture, Mapping) else None
    cls = BACKENDS.get((kind, interface))
    if cls is None:
        served = sorted(i for k, i in BACKENDS if k == kind)
        raise InvalidArgument(f"a {kind!r} model cannot serve interface {interface!r}; it serves {served}",
                              field="interface")
    return cls


def backend_for(interface: str, runtime: Runtime, *, artifact_id: str, metadata: Mapping[str, Any]) -> ModelBackend:
    return _backend_class(interface, metadata)(runtime, artifact_id=artifact_id, metadata=metadata)


def _completed_architecture(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The spec load_module needs. The demo's text models record their classes only as class_labels,
    while load_module wants architecture.classes: take the count from the labels when it is absent."""
    architecture = dict(metadata["architecture"])
    labels = metadata.get("class_labels")
    if architecture.get("type") == "hashed_bow_linear" and "classes" not in architecture and isinstance(labels, list):
        architecture["classes"] = len(labels)
    return architecture


def torch_backend(interface: str, *, artifact_id: str, metadata: Mapping[str, Any],
                  state_dict: Mapping[str, Any]) -> ModelBackend:
    cls = _backend_class(interface, metadata)  # refuse a mismatch before building anything
    module = load_module(_completed_architecture(metadata), state_dict)
    return cls(runtime_for_module(module), artifact_id=artifact_id, metadata=metadata)


def onnx_backend(interface: str, *, artifact_id: str, metadata: Mapping[str, Any], model_path: Path | str,
                 threads: int | None = None) -> ModelBackend:
    cls = _backend_class(interface, metadata)
    return cls(OnnxRuntime(model_path, threads=threads), artifact_id=artifact_id, metadata=metadata)


def compiled_backend(interface: str, *, artifact_id: str, metadata: Mapping[str, Any], model_path: Path | str,
                     max_batch_size: int = 0) -> ModelBackend:
    """A compiled TorchScript (.pt) or AOTInductor (.pt2) output behind the backend of its source artifact's
    architecture (`metadata` is the source's): same preprocess / postprocess as the eager model.
    `max_batch_size` is the compile's (a .pt2's batch range ends there; larger batches run in chunks)."""
    cls = _backend_class(interface, metadata)
    return cls(compiled_runtime(model_path, max_batch_size=max_batch_size), artifact_id=artifact_id,
               metadata=metadata)


def transformers_backend(interface: str, *, artifact_id: str, metadata: Mapping[str, Any], folder: Path | str,
                         state_dict: Mapping[str, Any] | None = None) -> ModelBackend:
    """A transformers text-classification snapshot as an Analyzer or a text Classifier. `folder` must be
    verified (LoadHandler.load / materialise); `state_dict`, the verified tensors, is what runs when given."""
    cls = TRANSFORMERS_BACKENDS.get(interface)
    if cls is None:
        raise InvalidArgument(f"a transformers text-classification model cannot serve interface {interface!r}; "
                              f"it serves {sorted(TRANSFORMERS_BACKENDS)}", field="interface")
    runtime = load_text_pipeline(folder, state_dict=state_dict, metadata=metadata)
    return cls(runtime, artifact_id=artifact_id, metadata=metadata)


def segmenter_backend(*, artifact_id: str = "algorithmic:binary_segmentation",
                      metadata: Mapping[str, Any] | None = None) -> ChangePointSegmenter:
    return ChangePointSegmenter(artifact_id=artifact_id, metadata=metadata)
