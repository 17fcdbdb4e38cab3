"""An artifact's metadata as the serving backends read it, and the interface a model serves by default.

Artifacts record their training statistics the way the SaveHandler writes them (`training_stats`:
{"mean": [...], "std": [...]} in `feature_names` order; text models `text_stats`: {"token_count":
{"mean": [m], "std": [s]}}), while the rules read `feature_stats`: {name: {"mean", "std"}}. The
translation is here, once, so every artifact gets its OOD guard whichever way it was saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.core.errors import FailedPrecondition, InvalidArgument
from services.serving.interfaces.backends.factory import BACKENDS
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
    text = metadata.get("text_stats")
    if isinstance(text, Mapping):
        for name, entry in text.items():
            if isinstance(entry, Mapping):
                m, s = _scalar(entry.get("mean")), _scalar(entry.get("std"))
                if m is not None and s is not None:
                    stats[str(name)] = {"mean": m, "std": s}
    return stats


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
    transformers snapshot has no architecture spec: it names its interface, or Deploy does."""
    declared = metadata.get("interface")
    if isinstance(declared, str) and declared in INTERFACE_KINDS:
        return declared
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
