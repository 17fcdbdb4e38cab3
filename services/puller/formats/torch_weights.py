"""A safetensors push: a torch state dict of one of services/core/models/architectures.py's architectures.

The architecture travels in the safetensors header (`__metadata__["architecture"]`, JSON), since weights
alone cannot say what module they fill. The header is checked before anything parses the tensors, and
the module is rebuilt on the meta device to prove the tensor names and shapes fit it (no weight is
loaded, no code comes with the file). The metadata is what the SaveHandler writes (architecture,
feature_names, training_stats) plus the push's binding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.core.artifacts.safetensors_guard import check_safetensors
from services.core.errors import InvalidArgument, MLMeshError
from services.puller.formats.binding import SERIES_FEATURE
from services.puller.formats.files import field_of
from services.puller.formats.options import ImportOptions, Progress
from services.puller.formats.reference import sample_metadata

MAX_HEADER_BYTES = 100 * 1024 * 1024
# Mirrors serving's BACKENDS (architecture -> the interfaces it serves), first = default. Not imported:
# the inspector must not pull in the serving stack.
INTERFACES = {"mlp": ["predictor", "classifier"], "lstm_forecaster": ["forecaster"],
              "hashed_bow_linear": ["analyzer", "classifier"], "transformer_encoder": []}


def import_safetensors(folder: Path, rel: str, options: ImportOptions, progress: Progress) -> dict[str, Any]:
    progress("check", f"checking the safetensors header of {rel}")
    header = check_safetensors(folder / rel, max_header_bytes=MAX_HEADER_BYTES, label=rel)
    architecture = _json_entry(header.metadata, "architecture", rel)
    if not isinstance(architecture, dict) or not isinstance(architecture.get("type"), str):
        raise InvalidArgument(f"{rel} has no architecture: a safetensors push needs __metadata__['architecture'], "
                              "a JSON object with the 'type' of a services/core/models architecture "
                              f"({sorted(INTERFACES)}) and its sizes", field="format")
    kind = architecture["type"]
    labels = list(options.labels) or _json_entry(header.metadata, "class_labels", rel) or []
    if kind == "hashed_bow_linear" and "classes" not in architecture and labels:
        architecture = {**architecture, "classes": len(labels)}  # as serving completes it
    _fit(architecture, header.tensors, rel)
    meta: dict[str, Any] = {"source": "push", "architecture": architecture}
    names = list(options.feature_names) or _json_entry(header.metadata, "feature_names", rel) or []
    width = _input_width(architecture)
    if kind == "lstm_forecaster":
        names = names or [SERIES_FEATURE]
    elif width and not names:
        names = [f"f{i}" for i in range(width)]
    if width and kind == "mlp" and len(names) != width:
        raise InvalidArgument(f"{len(names)} feature names for an mlp of {width} inputs", field="feature_names")
    if names:
        meta["feature_names"] = [str(n) for n in names]
    classes = _classes(architecture)
    if labels:
        if classes is not None and len(labels) != classes:
            raise InvalidArgument(f"{len(labels)} labels for a {kind} of {classes} outputs", field="labels")
        meta["class_labels"] = [str(n) for n in labels]
    interfaces = [i for i in INTERFACES.get(kind, []) if i != "classifier" or labels]
    if kind == "mlp" and labels:
        interfaces = ["classifier", "predictor"]  # serving's default for an mlp with labels
    if options.interface and options.interface not in interfaces:
        raise InvalidArgument(f"a {kind} model backs {interfaces}" + (" (a classifier needs labels)" if
                              options.interface == "classifier" else ""), field="interface")
    if interfaces:
        meta["interfaces"], meta["interface"] = interfaces, options.interface or interfaces[0]
    if kind == "lstm_forecaster":
        meta["window"] = _window(architecture, options)
    elif options.window:
        raise InvalidArgument(f"a window applies to forecasters; a {kind} model takes none", field="window")
    if options.reference:
        if not names or kind == "hashed_bow_linear":
            raise InvalidArgument(f"a {kind} model takes no tabular reference sample", field="reference")
        sample, _ = sample_metadata(options.reference, meta["feature_names"], folder, given_names=True,
                                    series_window=meta.get("window") if kind == "lstm_forecaster" else None)
        meta.update(sample)
    return meta


def _json_entry(metadata: dict[str, str], key: str, rel: str) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise InvalidArgument(f"{rel}: __metadata__[{key!r}] is not JSON", field="format") from None


def _fit(architecture: dict[str, Any], tensors: dict[str, dict[str, Any]], rel: str) -> None:
    """The module built from the spec on the meta device must have exactly the file's tensor names/shapes."""
    import torch

    from services.core.models.architectures import build_module

    try:
        with torch.device("meta"):
            module = build_module(architecture)
    except MLMeshError as exc:
        raise InvalidArgument(f"{rel}: the architecture is not buildable: {exc}", field="format") from None
    expected = {name: list(t.shape) for name, t in module.state_dict().items()}
    found = {name: list(entry.get("shape", [])) for name, entry in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(set(found) - set(expected))[:3]
        shapes = [f"{n}: {found[n]} vs {expected[n]}" for n in expected if n in found and found[n] != expected[n]][:3]
        raise InvalidArgument(f"{rel}: the weights do not fit architecture {architecture['type']!r} (missing "
                              f"{missing}, unexpected {extra}, shapes {shapes})", field=field_of(rel))


def _input_width(architecture: dict[str, Any]) -> int:
    layers = architecture.get("layers")
    return int(layers[0]) if architecture["type"] == "mlp" and isinstance(layers, list) and layers else 0


def _classes(architecture: dict[str, Any]) -> int | None:
    if architecture["type"] == "mlp":
        return int(architecture["layers"][-1])
    if architecture["type"] == "hashed_bow_linear" and "classes" in architecture:
        return int(architecture["classes"])
    return None


def _window(architecture: dict[str, Any], options: ImportOptions) -> int:
    spec = architecture.get("window")
    if isinstance(spec, int) and spec > 0:
        if options.window and options.window != spec:
            raise InvalidArgument(f"window {options.window} differs from the architecture's {spec}", field="window")
        return spec
    if not options.window:
        raise InvalidArgument("a forecaster needs a fixed window: give window (or architecture.window)",
                              field="window")
    return options.window
