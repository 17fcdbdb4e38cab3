"""Model backends: preprocess (per request) / run (the batch function) / postprocess (per request)."""

from services.serving.interfaces.backends.base import ModelBackend, Prepared
from services.serving.interfaces.backends.factory import (
    BACKENDS,
    IMPORTED_BACKENDS,
    backend_for,
    compiled_backend,
    imported_backend,
    imported_interfaces,
    onnx_backend,
    segmenter_backend,
    torch_backend,
    transformers_backend,
)
from services.serving.interfaces.backends.compiled import AotiRuntime, TorchScriptRuntime, compiled_runtime
from services.serving.interfaces.backends.forecaster import WindowForecaster
from services.serving.interfaces.backends.runtimes import OnnxRuntime, Runtime, TorchRuntime
from services.serving.interfaces.backends.segmenter import ChangePointSegmenter, binary_segmentation
from services.serving.interfaces.backends.tabular import TabularClassifier, TabularPredictor
from services.serving.interfaces.backends.text import TextAnalyzer, TextClassifier, analyses, hashed_bags
from services.serving.interfaces.backends.transformers_text import (
    TRANSFORMERS_BACKENDS,
    TextPipeline,
    TransformersAnalyzer,
    TransformersClassifier,
    load_text_pipeline,
)

__all__ = [
    "BACKENDS", "IMPORTED_BACKENDS", "TRANSFORMERS_BACKENDS", "AotiRuntime", "ChangePointSegmenter", "ModelBackend",
    "OnnxRuntime", "Prepared", "Runtime", "TabularClassifier", "TabularPredictor", "TextAnalyzer", "TextClassifier",
    "TextPipeline", "TorchRuntime", "TorchScriptRuntime", "TransformersAnalyzer", "TransformersClassifier",
    "WindowForecaster", "analyses", "backend_for", "binary_segmentation", "compiled_backend", "compiled_runtime",
    "hashed_bags", "imported_backend", "imported_interfaces", "load_text_pipeline", "onnx_backend", "segmenter_backend",
    "torch_backend", "transformers_backend",
]
