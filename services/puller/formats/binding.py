"""Which interfaces a model's tensors can back (docs/byom.md "Binding"), decided at push.

regression: one numeric input [-1, F], a [-1] / [-1, K] value output -> predictor
classification: one numeric input [-1, F], a [-1, C] probability output -> classifier
series: input [-1, W], a [-1] / [-1, 1] value output -> forecaster and predictor (only when the push
        names a forecaster or a window: a [-1, F] -> [-1, 1] graph is a tabular predictor otherwise)
text: one string input [-1] / [-1, 1] and a probability output -> classifier and analyzer

An asked interface the model cannot back is refused naming the tensor that does not fit; so are labels,
feature names and a window that do not fit the tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.core.errors import InvalidArgument
from services.puller.formats.options import ImportOptions
from services.puller.formats.signature import ModelFacts, TensorSpec

SERIES_FEATURE = "value"  # a forecaster's one feature is the series itself (as the demo's LSTM records it)


@dataclass(frozen=True)
class Binding:
    kind: str                      # regression | classification | series | text
    interfaces: list[str]
    interface: str
    feature_names: list[str]
    class_labels: list[str] | None
    window: int | None
    value_output: str | None


def bind(facts: ModelFacts, options: ImportOptions) -> Binding:
    asked = options.interface
    if asked == "segmenter":
        raise InvalidArgument("no imported model format backs a segmenter (it finds change points in a series, "
                              "not a tensor a graph returns)", field="interface")
    single = _single_input(facts)
    if single.dtype == "string":
        return _text(facts, single, options)
    if facts.probability_output is not None:
        return _classification(facts, single, options)
    series = asked == "forecaster" or options.window > 0
    return _values(facts, single, options, series=series)


def _single_input(facts: ModelFacts) -> TensorSpec:
    if len(facts.inputs) != 1:
        names = ", ".join(i.describe() for i in facts.inputs)
        raise InvalidArgument(f"the model has {len(facts.inputs)} inputs ({names}); every interface feeds one "
                              "tensor of rows [-1, F]", field="interface")
    spec = facts.inputs[0]
    if spec.dtype == "string":
        if not spec.is_batch_of(None, 1):
            raise InvalidArgument(f"input {spec.describe()}: a text model takes one string per row, [-1] or "
                                  "[-1, 1]", field="interface")
        return spec
    if len(spec.shape) != 2 or not spec.numeric:
        raise InvalidArgument(f"input {spec.describe()} is not a numeric batch of rows [-1, F]", field="interface")
    if spec.shape[0] != -1:
        raise InvalidArgument(f"input {spec.describe()} has a fixed batch of {spec.shape[0]}; export it with a "
                              "dynamic first dimension", field="interface")
    return spec


def _refuse_asked(options: ImportOptions, interfaces: list[str], why: str) -> None:
    if options.interface and options.interface not in interfaces:
        raise InvalidArgument(f"the model cannot back a {options.interface}: {why}; it backs {interfaces}",
                              field="interface")


def _not_text(spec: TensorSpec) -> str:
    return f"an analyzer reads text, and input {spec.describe()} is numeric"


def _labels(facts: ModelFacts, options: ImportOptions, classes: list[str]) -> list[str]:
    if options.labels and len(options.labels) != len(classes):
        raise InvalidArgument(f"{len(options.labels)} labels for {len(classes)} classes ({classes}); give one "
                              "label per class, in the model's class order", field="labels")
    return list(options.labels) or list(classes)


def _no_labels(options: ImportOptions, what: str) -> None:
    if options.labels:
        raise InvalidArgument(f"the model has no classes ({what}); labels apply to classifiers only",
                              field="labels")


def _feature_names(facts: ModelFacts, options: ImportOptions, width: int, spec: TensorSpec) -> list[str]:
    names = list(options.feature_names) or list(facts.model_feature_names or [])
    if width == -1:
        if not names:
            raise InvalidArgument(f"input {spec.describe()} leaves the number of features open; give "
                                  "feature_names", field="feature_names")
        return names
    if not names:
        return [f"f{i}" for i in range(width)]
    if len(names) != width:
        source = "given" if options.feature_names else "recorded in the model"
        raise InvalidArgument(f"{len(names)} feature names {source} for input {spec.describe()} of {width} "
                              "columns", field="feature_names")
    return names


def _classification(facts: ModelFacts, spec: TensorSpec, options: ImportOptions) -> Binding:
    probability = facts.output(facts.probability_output)
    assert probability is not None
    interfaces = ["classifier"]
    _refuse_asked(options, interfaces, _not_text(spec) if options.interface == "analyzer" else
                  f"output {probability.describe()} holds class probabilities, not a value")
    classes = facts.classes or [str(i) for i in range(probability.shape[1])]
    if options.window:
        raise InvalidArgument("a window applies to forecasters; this model is a classifier", field="window")
    width = spec.shape[1]
    names = _feature_names(facts, options, width, spec)
    return Binding("classification", interfaces, options.interface or "classifier", names,
                   _labels(facts, options, classes), None, None)


def _text(facts: ModelFacts, spec: TensorSpec, options: ImportOptions) -> Binding:
    if facts.probability_output is None:
        outputs = ", ".join(o.describe() for o in facts.outputs)
        raise InvalidArgument(f"a text model backs classifier and analyzer from a [-1, C] probability output; "
                              f"its outputs are {outputs}", field="interface")
    interfaces = ["classifier", "analyzer"]
    _refuse_asked(options, interfaces, f"input {spec.describe()} is text")
    probability = facts.output(facts.probability_output)
    classes = facts.classes or [str(i) for i in range(probability.shape[1])]
    if len(options.feature_names) > 1:
        raise InvalidArgument("a text model has one input column", field="feature_names")
    names = list(options.feature_names) or [spec.name]
    return Binding("text", interfaces, options.interface or "classifier", names,
                   _labels(facts, options, classes), None, None)


def _values(facts: ModelFacts, spec: TensorSpec, options: ImportOptions, *, series: bool) -> Binding:
    width = spec.shape[1]
    value = next((o for o in facts.outputs if o.numeric and o.is_batch_of(None, 1)), None)
    if not series:
        value = value or next((o for o in facts.outputs if o.numeric and o.is_batch_of(None, -1)), None)
    if value is None:
        outputs = ", ".join(o.describe() for o in facts.outputs)
        wanted = "[-1] or [-1, 1]" if series else "[-1] or [-1, K]"
        target = options.interface or ("forecaster" if series else "predictor")
        raise InvalidArgument(f"the model cannot back a {target}: it needs a numeric value output {wanted}; its "
                              f"outputs are {outputs}", field="interface")
    _no_labels(options, f"its output {value.describe()} is a value")
    if not series:
        interfaces = ["predictor"]
        _refuse_asked(options, interfaces, _not_text(spec) if options.interface == "analyzer" else
                      f"output {value.describe()} is a value, not class probabilities")
        names = _feature_names(facts, options, width, spec)
        return Binding("regression", interfaces, options.interface or "predictor", names, None, None,
                       value.name)
    window = _window(spec, options)
    if len(options.feature_names) > 1:
        raise InvalidArgument(f"a forecaster reads one series; give at most one feature name, not "
                              f"{len(options.feature_names)}", field="feature_names")
    interfaces = ["forecaster", "predictor"]
    _refuse_asked(options, interfaces, _not_text(spec) if options.interface == "analyzer" else
                  f"output {value.describe()} is a value, not class probabilities")
    names = list(options.feature_names) or [SERIES_FEATURE]
    return Binding("series", interfaces, options.interface or "forecaster", names, None, window, value.name)


def _window(spec: TensorSpec, options: ImportOptions) -> int:
    fixed = spec.shape[1]
    if fixed == -1:
        if not options.window:
            raise InvalidArgument(f"input {spec.describe()} leaves the window open; a forecaster needs a fixed "
                                  "number of values per window: give window", field="window")
        return options.window
    if options.window and options.window != fixed:
        raise InvalidArgument(f"window {options.window} differs from input {spec.describe()}, which takes "
                              f"{fixed} values", field="window")
    return fixed


# ---- the metadata of a binding ----

def signature(facts: ModelFacts, binding: Binding) -> dict[str, Any]:
    out: dict[str, Any] = {"inputs": [i.to_dict() for i in facts.inputs],
                           "outputs": [o.to_dict() for o in facts.outputs], "kind": binding.kind}
    if binding.kind in ("regression", "series"):
        out["value_output"] = binding.value_output
    else:
        out["probability_output"] = facts.probability_output
        if facts.label_output:
            out["label_output"] = facts.label_output
        probability = facts.output(facts.probability_output)
        out["classes"] = list(facts.classes or [str(i) for i in range(probability.shape[1])])
    return out


def binding_metadata(binding: Binding) -> dict[str, Any]:
    meta: dict[str, Any] = {"interfaces": binding.interfaces, "interface": binding.interface,
                            "feature_names": binding.feature_names}
    if binding.class_labels is not None:
        meta["class_labels"] = binding.class_labels
    if binding.window is not None:
        meta["window"] = binding.window
    return meta
