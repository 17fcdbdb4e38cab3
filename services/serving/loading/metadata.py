"""An artifact's metadata as the serving backends read it, and the interface a model serves by default.

Artifacts record their training statistics the way the SaveHandler writes them (`training_stats`:
{"mean": [...], "std": [...]} in `feature_names` order; text models `text_stats`: {"token_count":
{"mean": [m], "std": [s]}}), while the rules read `feature_stats`: {name: {"mean", "std"}}. The
translation is here, once, so every artifact gets its OOD guard whichever way it was saved.
An imported window model (docs/byom.md, signature kind "series") records the series' statistics as one
column (or one per window position, pooled here): its forecaster checks the history as that column, and
its predictor each window position ("value[0]" .. "value[W-1]") against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.interfaces.backends.factory import BACKENDS, imported_interfaces
from services.serving.interfaces.backends.imported.signature import IMPORTED_FRAMEWORKS, series_name, window_columns
from services.serving.interfaces.backends.transformers_text import TRANSFORMERS_BACKENDS
from services.serving.interfaces.base import INTERFACE_KINDS


def _scalar(value: Any) -> float | None:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 1:
        value = value[0]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _column_names(metadata: Mapping[str, Any], count: int) -> list[str]:
    names = metadata.get("feature_names")
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) == count:
        return [str(n) for n in names]
    architecture = metadata.get("architecture") or {}
    if count == 1 and isinstance(architecture, Mapping) and architecture.get("type") == "lstm_forecaster":
        return ["value"]  # a forecaster's one feature is the series itself
    return [f"f{i}" for i in range(count)]  # the names TabularBackend gives unnamed columns


def _feature_stats(metadata: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    stats: dict[str, dict[str, float]] = {}
    training = metadata.get("training_stats")
    if isinstance(training, Mapping):
        mean, std = training.get("mean"), training.get("std")
        if isinstance(mean, Sequence) and isinstance(std, Sequence) and len(mean) == len(std):
            for name, m, s in zip(_column_names(metadata, len(mean)), mean, std):
                if isinstance(m, (int, float)) and isinstance(s, (int, float)):
                    stats[name] = {"mean": float(m), "std": float(s)}
    if _is_series(metadata) and stats:
        stats = _series_stats(metadata, list(stats.values()))
    text = metadata.get("text_stats")
    if isinstance(text, Mapping):
        for name, entry in text.items():
            if isinstance(entry, Mapping):
                m, s = _scalar(entry.get("mean")), _scalar(entry.get("std"))
                if m is not None and s is not None:
                    stats[str(name)] = {"mean": m, "std": s}
    return stats


def _is_series(metadata: Mapping[str, Any]) -> bool:
    signature = metadata.get("signature")
    return isinstance(signature, Mapping) and signature.get("kind") == "series"


def _series_stats(metadata: Mapping[str, Any], columns: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """An imported window model's statistics: the series' own (one column, as the puller records them; or
    pooled from one per window position) for the forecaster, and one per window column for the predictor."""
    name = series_name(metadata)
    if len(columns) == 1:
        series = columns[0]
        window = metadata.get("window")
        inputs = (metadata.get("signature") or {}).get("inputs") or [{}]
        shape = inputs[0].get("shape") if isinstance(inputs[0], Mapping) else None
        width = int(shape[1]) if isinstance(shape, Sequence) and len(shape) == 2 and shape[1] > 0 else (
            int(window) if isinstance(window, (int, float)) and window >= 1 else 0)
        positions = [series] * width
    else:
        positions = columns
        mean = sum(c["mean"] for c in columns) / len(columns)  # pooled over every position's values
        spread = (sum(c["std"] ** 2 for c in columns) / len(columns)
                  + sum((c["mean"] - mean) ** 2 for c in columns) / len(columns))
        series = {"mean": mean, "std": spread ** 0.5}
    return {name: series, **dict(zip(window_columns(name, len(positions)), positions))}


def serving_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `metadata` with `feature_stats` filled in from the recorded statistics (unless given)."""
    meta = dict(metadata)
    if not isinstance(meta.get("feature_stats"), Mapping):
        stats = _feature_stats(meta)
        if stats:
            meta["feature_stats"] = stats
    return meta


def architecture_type(metadata: Mapping[str, Any]) -> str:
    architecture = metadata.get("architecture")
    kind = architecture.get("type") if isinstance(architecture, Mapping) else None
    if not isinstance(kind, str):
        raise FailedPrecondition("the artifact has no metadata.architecture: serving rebuilds a model from its "
                                 "architecture spec and weights, and never runs code shipped with an artifact",
                                 field="model")
    return kind


def default_interface(metadata: Mapping[str, Any], framework: str = "") -> str:
    """The interface to serve when Deploy names none: the artifact's own `interface`, else the only one
    its architecture serves (an MLP with class labels classifies, without them it predicts). A
    transformers snapshot has no architecture spec: it names its interface, or Deploy does. An imported
    model (onnx / xgboost / lightgbm) without one serves the first interface its signature binds."""
    declared = metadata.get("interface")
    if isinstance(declared, str) and declared in INTERFACE_KINDS:
        return declared
    if framework in IMPORTED_FRAMEWORKS:
        served = imported_interfaces(metadata)
        if not served:
            raise InvalidArgument("this imported model lists no interface its signature binds",
                                  field="interface")
        return served[0]
    if framework == "transformers":
        raise InvalidArgument(f"give the interface: a transformers text-classification model serves "
                              f"{sorted(TRANSFORMERS_BACKENDS)}", field="interface")
    kind = architecture_type(metadata)
    served = sorted(i for k, i in BACKENDS if k == kind)
    if len(served) == 1:
        return served[0]
    if kind == "mlp":
        return "classifier" if metadata.get("class_labels") else "predictor"
    raise InvalidArgument(f"give the interface: a {kind!r} model serves {served}", field="interface")
