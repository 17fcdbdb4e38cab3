"""The five agent-facing interfaces (ABCs), their typed calls and plain results, the component
registry they are registered in (kind="interface"), and binding them over any call runner.
Model backends live in `interfaces.backends` (imported on its own: it pulls in torch)."""

from services.serving.interfaces.base import (
    INTERFACE_CLASSES,
    INTERFACE_KINDS,
    Analyzer,
    Classifier,
    Forecaster,
    Interface,
    Predictor,
    Segmenter,
)
from services.serving.interfaces.binding import CallRunner, bind_interface
from services.serving.interfaces.calls import (
    CALLS,
    AnalyzeCall,
    Call,
    ClassifyCall,
    ForecastCall,
    PredictCall,
    Row,
    SegmentCall,
)
from services.serving.interfaces.registry import ComponentRegistry, interface_registry
from services.serving.interfaces.results import (
    Analysis,
    CallOptions,
    Classification,
    Forecast,
    Prediction,
    Segment,
    Segmentation,
)

__all__ = [
    "CALLS", "INTERFACE_CLASSES", "INTERFACE_KINDS", "AnalyzeCall", "Analysis", "Analyzer", "Call", "CallOptions",
    "CallRunner", "ClassifyCall", "Classification", "Classifier", "ComponentRegistry", "ForecastCall", "Forecast",
    "Forecaster", "Interface", "PredictCall", "Prediction", "Predictor", "Row", "SegmentCall", "Segment",
    "Segmentation", "Segmenter", "bind_interface", "interface_registry",
]
