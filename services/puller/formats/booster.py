"""What XGBoost and LightGBM pushes share: the native signature, conversion to ONNX only for allow-listed
objectives, the parity proof, and the choice of what serving runs ("onnx" when proven, else "native").

A booster module describes its model as a `Booster` (facts, a native predict, a converter, its split
thresholds); `import_booster` does the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.core.errors import InvalidArgument
from services.puller.formats.binding import bind, binding_metadata, signature
from services.puller.formats.files import field_of
from services.puller.formats.onnx_model import session
from services.puller.formats.options import ImportOptions, Progress
from services.puller.formats.parity import TOLERANCE, Parity, compare, threshold_sample
from services.puller.formats.reference import sample_metadata
from services.puller.formats.signature import ModelFacts, TensorSpec, label_candidate, ort_spec, probability_candidates

CONVERTED_FILE = "model.onnx"
MAX_REFERENCE_ROWS = 10_000  # parity rows taken from a reference sample (evenly spaced when it is longer)
INPUT_NAME = "input"


@dataclass
class Booster:
    framework: str                    # "xgboost" | "lightgbm": the manifest framework and native runtime kind
    format: str                       # manifest format ("xgboost-ubj", "lightgbm-text", ...)
    file: str                         # the library file, relative
    task: str                         # "regression" | "classification" | "ranking"
    objective: str
    features: int
    feature_names: list[str] | None
    width: int                        # classes (classification) or targets (regression)
    not_converted: str                # why no conversion is tried ("" = allow-listed)
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # -> (values [rows, k], labels)
    convert: Callable[[], Any]        # -> onnx.ModelProto with one float input "input" [-1, F]
    thresholds: Callable[[], dict[int, set[float]]]
    native_extra: dict[str, Any] = field(default_factory=dict)  # e.g. xgboost's iteration_range


def native_facts(booster: Booster, options: ImportOptions) -> ModelFacts:
    """The signature serving uses for the library itself: input "input" float32 [-1, F]; outputs "variable"
    [-1, K] or "probabilities" [-1, C] (binary: [1-p, p])."""
    inputs = [TensorSpec(INPUT_NAME, "float32", (-1, booster.features))]
    if booster.task == "classification":
        outputs = [TensorSpec("probabilities", "float32", (-1, booster.width))]
        return ModelFacts(inputs, outputs, classes=[str(i) for i in range(booster.width)],
                          probability_output="probabilities", model_feature_names=booster.feature_names)
    if booster.task == "ranking" and options.interface != "predictor":
        raise InvalidArgument(f"a ranking booster ({booster.objective}) returns relevance scores, which neither a "
                              "classifier nor a forecaster can serve; push it with interface predictor to serve "
                              "its scores", field="interface")
    outputs = [TensorSpec("variable", "float32", (-1, booster.width))]
    return ModelFacts(inputs, outputs, model_feature_names=booster.feature_names)


def import_booster(folder: Path, booster: Booster, options: ImportOptions, progress: Progress) -> dict[str, Any]:
    """The metadata of a booster push; writes model.onnx (kept only when proven) and reference.npy."""
    facts = native_facts(booster, options)
    binding = bind(facts, options)
    progress("bind", f"{booster.objective}: {binding.kind}, interfaces {binding.interfaces}")
    stats: dict[str, Any] = {}
    sample = None
    if options.reference:
        progress("reference", "reading the reference sample")
        stats, reference = sample_metadata(options.reference, binding.feature_names, folder,
                                           series_window=binding.window if binding.kind == "series" else None,
                                           given_names=bool(options.feature_names))
        if reference.values.shape[1] == booster.features:
            sample = reference.values
    native = {"kind": booster.framework, "file": booster.file, **booster.native_extra}
    conversion, served = _convert(folder, booster, sample, progress)
    if served is not None:
        runtime = {"kind": "onnxruntime", "file": CONVERTED_FILE, **booster.native_extra}
        served_facts = served
    else:
        runtime, served_facts = dict(native), facts
    final = bind(served_facts, options)
    return {"source": "push", "runtime": runtime, "native": native, "signature": signature(served_facts, final),
            **binding_metadata(final), **stats, "conversion": conversion}


def _record(parity: Parity | None, served: str, reason: str) -> dict[str, Any]:
    return {"to": "onnx" if parity is not None else "", "served": served,
            "rows": parity.rows if parity else 0, "max_abs_diff": parity.max_abs_diff if parity else None,
            "tolerance": TOLERANCE, "labels_identical": parity.labels_identical if parity else None,
            "reason": reason}


def _convert(folder: Path, booster: Booster, sample: np.ndarray | None,
             progress: Progress) -> tuple[dict[str, Any], ModelFacts | None]:
    if booster.not_converted:
        progress("convert", f"served natively: {booster.not_converted}")
        return _record(None, "native", booster.not_converted), None
    target = folder / CONVERTED_FILE
    if target.exists():
        what = "the booster was pushed as" if booster.file == CONVERTED_FILE else "a file was pushed beside it as"
        raise InvalidArgument(f"{what} {CONVERTED_FILE}, the name its ONNX conversion takes; push the booster "
                              "alone, under its own suffix (.json, .ubj, .txt)", field=field_of(CONVERTED_FILE))
    progress("convert", f"converting {booster.file} ({booster.objective}) to ONNX")
    try:
        model = booster.convert()
        _open_batch_dimension(model)
        target.write_bytes(model.SerializeToString())
        served = session(target, CONVERTED_FILE)
    except Exception as exc:  # noqa: BLE001 - converters raise anything on models they do not support
        target.unlink(missing_ok=True)
        reason = f"conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        progress("convert", f"served natively: {reason}")
        return _record(None, "native", reason), None
    source = "the reference sample"
    if sample is None:
        sample, source = threshold_sample(booster.thresholds(), booster.features), "a sample of the split thresholds"
    elif len(sample) > MAX_REFERENCE_ROWS:
        sample = sample[np.linspace(0, len(sample) - 1, MAX_REFERENCE_ROWS).astype(int)]
    progress("parity", f"comparing the conversion with {booster.framework} on {len(sample)} rows of {source}")
    facts = _onnx_facts(served, booster)
    try:
        parity = _parity(booster, served, facts, sample)
    except Exception as exc:  # noqa: BLE001 - a graph that cannot run the sample is not proven
        parity = Parity(len(sample), 0.0, None, False, f"the parity run failed ({type(exc).__name__})")
    if not parity.ok:
        target.unlink()
        reason = f"{parity.reason} on {source}"
        progress("parity", f"served natively: {reason}")
        return _record(parity, "native", reason), None
    return _record(parity, "onnx", ""), facts


def _open_batch_dimension(model) -> None:
    """Converters declare some outputs with a batch of 1 (LightGBM's label): every output's first
    dimension becomes symbolic, as the graph computes it."""
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "N"


def _onnx_facts(served, booster: Booster) -> ModelFacts:
    inputs = [ort_spec(a) for a in served.get_inputs()]
    outputs = [ort_spec(a) for a in served.get_outputs()]
    if booster.task != "classification":
        return ModelFacts(inputs, outputs, model_feature_names=booster.feature_names)
    found = probability_candidates(outputs, booster.width)
    probability = found[0].name if found else None
    label = label_candidate(outputs, probability)
    return ModelFacts(inputs, outputs, classes=[str(i) for i in range(booster.width)],
                      probability_output=probability, label_output=label.name if label else None,
                      model_feature_names=booster.feature_names)


def _parity(booster: Booster, served, facts: ModelFacts, sample: np.ndarray) -> Parity:
    native_values, native_labels = booster.predict(sample)
    results = dict(zip([o.name for o in served.get_outputs()],
                       served.run(None, {INPUT_NAME: np.ascontiguousarray(sample, dtype=np.float32)})))
    if booster.task == "classification":
        if facts.probability_output is None:
            return Parity(len(sample), 0.0, None, False, "the converted graph has no probability output")
        served_labels = results.get(facts.label_output) if facts.label_output else None
        return compare(native_values, results[facts.probability_output], native_labels=native_labels,
                       served_labels=served_labels if served_labels is not None else
                       np.argmax(results[facts.probability_output], axis=1))
    value = next((o for o in facts.outputs if o.numeric), None)
    return compare(native_values, results[value.name])
