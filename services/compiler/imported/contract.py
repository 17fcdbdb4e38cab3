"""What the compiler reads from an imported model's artifact (docs/byom.md), checked before any operation
exists: the manifest framework says it is imported, `metadata.runtime` names the ONNX graph served, and
`metadata.signature` its tensors, which the compiled graph keeps (names, types, per-row shapes).

Refused here, each a FAILED_PRECONDITION naming the field at fault: a booster served natively (no ONNX
graph: `metadata.runtime.kind`), a graph file the artifact does not list, a signature that is not one
numeric input [-1, F...] with fixed row dims, a target that does not take imported graphs (`target`: the
`onnx` target because the artifact already is ONNX), and int8 or fp16 of a booster's graph, a tree
ensemble with nothing either would change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.compiler.compilers.registry import CompilerCatalog, Resolved
from services.compiler.signature import ModelSignature, TensorSig, input_stats
from services.compiler.triton_config import DATA_TYPES
from services.core.artifacts.manifest import Manifest
from services.core.errors import FailedPrecondition

IMPORTED_FRAMEWORKS = ("onnx", "xgboost", "lightgbm")
BOOSTERS = ("xgboost", "lightgbm")
RUNTIME_KIND = "onnxruntime"
REFERENCE_FILE = "reference.npy"
INPUT_DTYPES = ("float32", "float64", "int32", "int64")  # numbers validation can draw or read (the puller's)


@dataclass(frozen=True)
class ImportedModel:
    framework: str
    graph_file: str  # metadata.runtime.file: the graph served, relative to the artifact
    signature: ModelSignature  # the graph's own tensor names
    reference_file: str | None  # the reference sample, when the artifact holds one

    @property
    def tree_ensemble(self) -> bool:
        return self.framework in BOOSTERS


def is_imported(manifest: Manifest) -> bool:
    return manifest.framework in IMPORTED_FRAMEWORKS


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # metadata crossed a protobuf Struct: every number is a double
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tensor(spec: Any, where: str, *, fixed_rows: bool) -> TensorSig:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise FailedPrecondition("needs a name, a dtype and a shape", field=where)
    dtype = spec.get("dtype")
    if dtype not in DATA_TYPES:
        raise FailedPrecondition(f"dtype {dtype!r} is not one of {sorted(DATA_TYPES)}", field=f"{where}.dtype")
    shape = spec.get("shape")
    dims = [_int(d) for d in shape] if isinstance(shape, Sequence) and not isinstance(shape, str) else []
    if not dims or dims[0] != -1 or any(d is None or d == 0 or d < -1 for d in dims[1:]) \
            or (fixed_rows and any(d == -1 for d in dims[1:])):
        rows = "positive sizes" if fixed_rows else "-1 or positive sizes"
        raise FailedPrecondition(f"shape {shape!r} must be [-1, ...] (a dynamic batch) with {rows} after it",
                                 field=f"{where}.shape")
    return TensorSig(spec["name"], tuple(dims[1:]), dtype)


def imported_signature(metadata: Mapping[str, Any]) -> ModelSignature:
    signature = metadata.get("signature")
    if not isinstance(signature, Mapping):
        raise FailedPrecondition("an imported model needs metadata.signature (docs/byom.md)", field="metadata.signature")
    inputs, outputs = signature.get("inputs"), signature.get("outputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise FailedPrecondition("the compiler takes graphs with exactly one input", field="metadata.signature.inputs")
    if not isinstance(outputs, list) or not outputs:
        raise FailedPrecondition("lists no outputs", field="metadata.signature.outputs")
    where = "metadata.signature.inputs[0]"
    spec = inputs[0]
    text = isinstance(spec, Mapping) and spec.get("dtype") == "string"
    tensor = _tensor(spec, where, fixed_rows=not text)
    if not text and tensor.dtype not in INPUT_DTYPES:
        raise FailedPrecondition(f"the compiler validates graphs with a {', '.join(INPUT_DTYPES)} input, not "
                                 f"{tensor.dtype}", field=f"{where}.dtype")
    out = tuple(_tensor(o, f"metadata.signature.outputs[{i}]", fixed_rows=False) for i, o in enumerate(outputs))
    if len({t.name for t in (tensor, *out)}) != 1 + len(out):
        raise FailedPrecondition("tensor names must be unique", field="metadata.signature")
    mean, std = (None, None) if text else input_stats(metadata, None, tensor.dims)
    return ModelSignature(
        inputs=(tensor,), outputs=out, text_input=text, text_reason="a string input, tokenised inside the graph"
        if text else "", classification=signature.get("kind") == "classification", mean=mean, std=std,
    )


def imported_model(manifest: Manifest) -> ImportedModel:
    metadata = manifest.metadata
    runtime = metadata.get("runtime")
    if not isinstance(runtime, Mapping):
        raise FailedPrecondition("an imported model needs metadata.runtime (docs/byom.md)", field="metadata.runtime")
    if runtime.get("kind") != RUNTIME_KIND:
        conversion = metadata.get("conversion") if isinstance(metadata.get("conversion"), Mapping) else {}
        reason = f" ({conversion['reason']})" if conversion.get("reason") else ""
        raise FailedPrecondition(
            f"the model is served natively by {runtime.get('kind')!r}{reason}: there is no ONNX graph to compile, "
            "and the compiler never loads library files", field="metadata.runtime.kind")
    graph_file = runtime.get("file")
    if not isinstance(graph_file, str) or not graph_file.endswith(".onnx") or manifest.file(graph_file) is None:
        raise FailedPrecondition(f"{graph_file!r} is not an .onnx file the artifact lists", field="metadata.runtime.file")
    reference = metadata.get("reference")
    reference_file = reference.get("file") if isinstance(reference, Mapping) else None
    if reference_file is None and manifest.file(REFERENCE_FILE) is not None:
        reference_file = REFERENCE_FILE
    if reference_file is not None and (not isinstance(reference_file, str) or not reference_file.endswith(".npy")
                                       or manifest.file(reference_file) is None):
        raise FailedPrecondition(f"{reference_file!r} is not a .npy file the artifact lists",
                                 field="metadata.reference.file")
    return ImportedModel(manifest.framework, graph_file, imported_signature(metadata), reference_file)


def graph_targets(catalog: CompilerCatalog) -> list[str]:
    return sorted(t for c in catalog.compilers for t in c.graph_targets)


def check_target(resolved: Resolved, model: ImportedModel, catalog: CompilerCatalog) -> None:
    """FailedPrecondition naming `target` when the target cannot usefully take this imported graph."""
    target, takes = resolved.target, graph_targets(catalog)
    if target == "onnx":
        raise FailedPrecondition(
            f"the artifact already is an ONNX graph ({model.graph_file}, framework {model.framework!r}): the onnx "
            f"target exports torch modules, and a copy of the graph would add nothing. Deploy the artifact as "
            f"it is, or compile it to {takes}", field="target")
    if target not in resolved.compiler.graph_targets:
        raise FailedPrecondition(
            f"the {resolved.compiler.alias} compiler builds {target} from a torch module; an imported ONNX graph "
            f"compiles to {takes}", field="target")
    if model.tree_ensemble:
        raise FailedPrecondition(
            f"{target} would change nothing in a {model.framework} model's graph (a tree ensemble: its ai.onnx.ml "
            "tree operators compare features with thresholds and hold no weight matrices to quantize or "
            "convert). The compiled output would be a useless copy: serve the imported graph as it is",
            field="target")
