"""Backends of imported models (docs/byom.md): ONNX graphs from any framework, XGBoost and LightGBM
boosters, bound to the typed interfaces from the signature their artifact records."""

from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.imported.factory import (
    IMPORTED_BACKENDS,
    imported_backend,
    imported_interfaces,
)
from services.serving.interfaces.backends.imported.boosters import LightGBMRuntime, XGBoostRuntime
from services.serving.interfaces.backends.imported.runtimes import (
    ImportedOnnxRuntime,
    external_data_files,
    load_runtime,
)
from services.serving.interfaces.backends.imported.sequence import ImportedForecaster
from services.serving.interfaces.backends.imported.signature import (
    IMPORTED_FRAMEWORKS,
    ModelSignature,
    TensorInfo,
    parse_signature,
)
from services.serving.interfaces.backends.imported.tabular import ImportedClassifier, ImportedPredictor
from services.serving.interfaces.backends.imported.text import ImportedTextAnalyzer, ImportedTextClassifier

__all__ = [
    "IMPORTED_BACKENDS", "IMPORTED_FRAMEWORKS", "ImportedBackend", "ImportedClassifier", "ImportedForecaster",
    "ImportedOnnxRuntime", "ImportedPredictor", "ImportedTextAnalyzer", "ImportedTextClassifier", "LightGBMRuntime",
    "ModelSignature", "TensorInfo", "XGBoostRuntime", "external_data_files", "imported_backend",
    "imported_interfaces", "load_runtime", "parse_signature",
]
