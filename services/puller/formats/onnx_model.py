"""An ONNX push: safety checks, the served graph (a final ZipMap removed), and the tensors it serves.

A classifier converted with skl2onnx's default options ends in a ZipMap, whose output is a list of
{class: probability} maps that no interface can batch. `served.onnx` is the same graph with that node
removed and its input (the [-1, C] probability tensor) made the output; `runtime.file` names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from services.core.errors import InvalidArgument
from services.puller.formats.files import field_of
from services.puller.formats.onnx_checks import check_graph, external_files, load_proto
from services.puller.formats.options import Progress
from services.puller.formats.signature import (
    ModelFacts, label_candidate, ort_spec, probability_candidates,
)

SERVED_FILE = "served.onnx"
_LABEL_ATTRS = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


@dataclass(frozen=True)
class OnnxGraph:
    runtime_file: str   # relative path of what serving runs
    facts: ModelFacts
    data_files: frozenset[str]  # its external data files


def session(path: Path, rel: str):
    """An InferenceSession from the FILE PATH (never bytes: bytes resolve external data against the cwd)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail / InvalidGraph / NotImplemented kinds
        raise InvalidArgument(f"onnxruntime cannot load {rel}: {str(exc).splitlines()[0][:300]}",
                              field=field_of(rel)) from None


def inspect_onnx(folder: Path, rel: str, progress: Progress) -> OnnxGraph:
    path = folder / rel
    model = load_proto(path, rel)
    progress("check", f"checking {rel}: op domains, external data, the ONNX checker, input dtypes")
    check_graph(model, folder, path, rel)
    classes = _classes(model)
    zipmap = _final_zipmap(model)
    served_rel, probability = rel, None
    if zipmap is not None:
        classes = _labels_of(zipmap) or classes
        served_rel = str(PurePosixPath(rel).with_name(SERVED_FILE))  # beside it: external data stays relative
        if (folder / served_rel).exists():
            raise InvalidArgument(f"{served_rel} was pushed, but that name is where the graph without its ZipMap "
                                  "goes; rename it", field=field_of(served_rel))
        probability = _strip_zipmap(model, zipmap, len(classes or []))
        (folder / served_rel).write_bytes(model.SerializeToString())
        progress("convert", f"{rel} ends in a ZipMap; serving {served_rel}, which returns the probability tensor")
    progress("load", f"loading {rel} with onnxruntime")
    session(path, rel)
    served = session(folder / served_rel, served_rel) if served_rel != rel else None
    served = served or session(path, rel)
    inputs = [ort_spec(a) for a in served.get_inputs()]
    outputs = [ort_spec(a) for a in served.get_outputs()]
    if probability is None:
        probability = _probability_output(model, outputs, classes)
    if classes and probability is None:
        listed = ", ".join(o.describe() for o in outputs)
        raise InvalidArgument(f"{rel} is a classifier of {len(classes)} classes, but none of its outputs ({listed}) "
                              "is a [-1, C] probability tensor; convert it with options={'zipmap': False}",
                              field="interface")
    label = label_candidate(outputs, probability) if probability else None
    facts = ModelFacts(inputs, outputs, classes=classes if probability else None, probability_output=probability,
                       label_output=label.name if label else None, model_feature_names=_feature_names(model))
    return OnnxGraph(served_rel, facts, frozenset(external_files(model, rel)))


def _labels_of(node) -> list[str] | None:
    import onnx

    for attr in node.attribute:
        if attr.name in _LABEL_ATTRS:
            values = onnx.helper.get_attribute_value(attr)
            if len(values):
                return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    return None


def _classes(model) -> list[str] | None:
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type.endswith("Classifier"):
            labels = _labels_of(node)
            if labels:
                return labels
    return None


def _final_zipmap(model):
    outputs = {o.name for o in model.graph.output}
    consumed = {name for node in model.graph.node for name in node.input}
    for node in model.graph.node:
        if node.op_type == "ZipMap" and node.domain == "ai.onnx.ml" and node.output[0] in outputs \
                and node.output[0] not in consumed:
            return node
    return None


def _strip_zipmap(model, zipmap, classes: int) -> str:
    """Remove the ZipMap; its input becomes a [-1, C] float output in the ZipMap output's place."""
    import onnx

    probability = zipmap.input[0]
    names = [o.name for o in model.graph.output]
    position = names.index(zipmap.output[0])
    model.graph.node.remove(zipmap)
    del model.graph.output[position]
    if probability not in names:  # else the tensor is an output already
        replacement = onnx.helper.make_tensor_value_info(probability, onnx.TensorProto.FLOAT,
                                                         ["N", classes or None])
        model.graph.output.insert(position, replacement)
    return probability


def _probability_output(model, outputs, classes: list[str] | None) -> str | None:
    """With classes: the float [-1, C] output (one whose name says "prob" first). Without: a [-1, C] output
    that a Softmax computes (a classifier exported from torch)."""
    if classes:
        found = probability_candidates(outputs, len(classes))
        found.sort(key=lambda spec: "prob" not in spec.name.lower())
        return found[0].name if found else None
    softmax = {node.output[0] for node in model.graph.node if node.op_type == "Softmax" and node.domain in ("",
                                                                                                         "ai.onnx")}
    found = [spec for spec in probability_candidates(outputs, None) if spec.name in softmax]
    return found[0].name if found else None


def _feature_names(model) -> list[str] | None:
    for prop in model.metadata_props:
        if prop.key == "feature_names" and prop.value.strip():
            return [n.strip() for n in prop.value.split(",")]
    return None
