"""The five interfaces client-side, over the typed Serving RPCs (see `remote`). Light to import: no torch,
no numpy; a caller needs a ServingClient (services.core.clients.serving) or a mesh channel."""

from services.serving.client.remote import (
    REMOTE_CLASSES,
    RemoteAnalyzer,
    RemoteClassifier,
    RemoteForecaster,
    RemotePredictor,
    RemoteRunner,
    RemoteSegmenter,
    deployed_interface,
    remote_interface,
)

__all__ = [
    "REMOTE_CLASSES", "RemoteAnalyzer", "RemoteClassifier", "RemoteForecaster", "RemotePredictor", "RemoteRunner",
    "RemoteSegmenter", "deployed_interface", "remote_interface",
]
