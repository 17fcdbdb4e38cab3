"""The backend table of imported models, by format rather than by model: (signature kind, interface) ->
backend class, over the runtime `metadata.runtime` names (docs/byom.md). Any ONNX graph, XGBoost or
LightGBM booster whose signature binds an interface is served by these six classes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.core.errors import InvalidArgument
from services.serving.interfaces.backends.imported.base import ImportedBackend
from services.serving.interfaces.backends.imported.runtimes import ExpectedFiles, load_runtime
from services.serving.interfaces.backends.imported.sequence import ImportedForecaster
from services.serving.interfaces.backends.imported.signature import declared_interfaces, parse_signature
from services.serving.interfaces.backends.imported.tabular import ImportedClassifier, ImportedPredictor
from services.serving.interfaces.backends.imported.text import ImportedTextAnalyzer, ImportedTextClassifier

IMPORTED_BACKENDS: dict[tuple[str, str], type[ImportedBackend]] = {
    ("regression", "predictor"): ImportedPredictor,
    ("classification", "classifier"): ImportedClassifier,
    ("series", "forecaster"): ImportedForecaster,
    ("series", "predictor"): ImportedPredictor,
    ("text", "classifier"): ImportedTextClassifier,
    ("text", "analyzer"): ImportedTextAnalyzer,
}


def imported_interfaces(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The interfaces an imported artifact serves: those `metadata.interfaces` lists that its signature
    kind binds (every one of its kind when the list is absent). FailedPrecondition for a bad signature."""
    signature = parse_signature(metadata)
    return tuple(i for i in declared_interfaces(metadata, signature) if (signature.kind, i) in IMPORTED_BACKENDS)


def imported_backend(interface: str, *, artifact_id: str, metadata: Mapping[str, Any], folder: Path | str,
                     framework: str = "", expected: ExpectedFiles | None = None,
                     threads: int | None = None) -> ImportedBackend:
    """An imported model (framework onnx / xgboost / lightgbm) as `interface`. `folder` must be the
    artifact's verified folder (LoadHandler.materialise); with `expected` (path -> (sha256, size) from the
    manifest) the files the runtime reads are hashed again right before the load. An interface the
    artifact does not list in `metadata.interfaces` is refused (InvalidArgument on "interface") before
    anything is loaded."""
    signature = parse_signature(metadata)
    served = imported_interfaces(metadata)
    if interface not in served:
        raise InvalidArgument(f"this {framework or 'imported'} {signature.kind} model serves {list(served)}, "
                              f"not {interface!r}", field="interface")
    cls = IMPORTED_BACKENDS[(signature.kind, interface)]
    runtime = load_runtime(folder, metadata, signature, framework=framework, expected=expected, threads=threads)
    return cls(runtime, signature, artifact_id=artifact_id, metadata=metadata)
