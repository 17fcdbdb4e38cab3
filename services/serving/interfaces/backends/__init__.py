"""Model backends: preprocess (per request) / run (the batch function) / postprocess (per request)."""

from services.serving.interfaces.backends.base import ModelBackend, Prepared
from services.serving.interfaces.backends.factory import (
    BACKENDS,
    backend_for,
    onnx_backend,
    segmenter_backend,
    torch_backend,
)
from services.serving.interfaces.backends.forecaster import WindowForecaster
from services.serving.interfaces.backends.runtimes import OnnxRuntime, Runtime, TorchRuntime
from services.serving.interfaces.backends.segmenter import ChangePointSegmenter, binary_segmentation
from services.serving.interfaces.backends.tabular import TabularClassifier, TabularPredictor
from services.serving.interfaces.backends.text import TextAnalyzer, TextClassifier, hashed_bags

__all__ = [
    "BACKENDS", "ChangePointSegmenter", "ModelBackend", "OnnxRuntime", "Prepared", "Runtime", "TabularClassifier",
    "TabularPredictor", "TextAnalyzer", "TextClassifier", "TorchRuntime", "WindowForecaster", "backend_for",
    "binary_segmentation", "hashed_bags", "onnx_backend", "segmenter_backend", "torch_backend",
]
