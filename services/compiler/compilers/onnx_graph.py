"""ONNX graphs the compiler did not export: an imported model's verified graph (docs/byom.md) checked,
made int8 or fp16, and run with every output by name.

- Checked before anything reads it through ONNX Runtime: op domains are allow-listed (`onnx.checker`
  accepts any), external data must be relative files the artifact lists (so verified) beside the graph,
  and the graph's inputs and outputs must be the ones `metadata.signature` names, with a dynamic batch.
- int8: ONNX Runtime `quant_pre_process` (when it works on the graph: symbolic shape inference gives up
  on graphs with ai.onnx.ml operators, which then quantize with their tensor types declared, see `typed`)
  + `quantize_dynamic(QInt8)`. A graph with no operator dynamic quantization rewrites (tree ensembles,
  skl2onnx's default LinearClassifier graphs) is refused, and so is a quantization that changed no
  weight: either would be a useless copy of the source.
- fp16: ONNX Runtime's float16 converter with `keep_io_types=True` (inputs and outputs stay as the
  source declares them) on the `typed` graph; ai.onnx.ml operators stay fp32 (its default block list),
  and a conversion that left no fp16 weight is refused like an int8 one.
Input and output names are the source graph's: both converters keep them. The converters work on a
private copy (`staged_copy`): they write temporary files beside their input.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from services.compiler.compilers.base import export_failure
from services.compiler.compilers.onnx import MODEL_FILE as GRAPH_FILE
from services.compiler.signature import ModelSignature
from services.core.errors import FailedPrecondition

DATA_FILE = "model.onnx.data"
ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
# What quantize_dynamic rewrites (onnxruntime.quantization.registry.IntegerOpsRegistry; Gemm becomes
# MatMul first). Transpose only follows a quantized input, so it alone quantizes nothing.
INT8_OPS = frozenset({"Attention", "Conv", "EmbedLayerNormalization", "Gather", "LSTM", "MatMul", "Gemm"})
TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})
ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64", 3: "int8", 5: "int16", 6: "int32",
               7: "int64", 2: "uint8", 9: "bool", 8: "string"}
_ORT_TYPES = {1: "float", 10: "float16", 11: "double", 16: "bfloat16", 2: "uint8", 3: "int8", 5: "int16", 6: "int32",
              7: "int64", 9: "bool", 8: "string"}
_INT8_TYPES = (2, 3)  # onnx TensorProto UINT8, INT8
_FP16_TYPE = 10

GraphRun = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class SourceGraph:
    """An imported model's verified graph: `path` inside the materialised artifact `folder`, `listed`
    the artifact's files (relative paths), `reference` its verified reference sample when it has one."""

    path: Path
    folder: Path
    listed: frozenset[str]
    reference: Path | None = None
    label: str = GRAPH_FILE  # the graph's path inside the artifact, for messages

    @property
    def size(self) -> int:
        """The graph and its external data, in bytes."""
        return self.path.stat().st_size + sum((self.folder / p).stat().st_size for p in external_files(self))


@dataclass(frozen=True)
class GraphJob:
    """An imported graph to compile: its signature (the graph's own tensor names), the target, the
    effective kwargs, and private folders like CompileJob's."""

    graph: SourceGraph
    signature: ModelSignature
    target: str
    kwargs: Mapping[str, Any]
    out_dir: Path
    scratch: Path


def external_files(graph: SourceGraph) -> tuple[str, ...]:
    """The external data files the graph names, each checked: relative, no '..', listed by the artifact
    (so verified by the materialise path), a regular file beside or below the graph's folder."""
    import onnx

    model = onnx.load(str(graph.path), load_external_data=False)
    base = PurePosixPath(graph.path.relative_to(graph.folder).as_posix()).parent
    found: set[str] = set()
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node for a in n.attribute if a.HasField("t"))]
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key != "location":
                continue
            location = PurePosixPath(entry.value)
            relative = (base / location).as_posix()
            target = graph.folder / relative
            if (location.is_absolute() or "\\" in entry.value or ".." in location.parts
                    or relative not in graph.listed or target.is_symlink() or not target.is_file()):
                raise FailedPrecondition(
                    f"{graph.label} names external data {entry.value!r}, which is not a file of the artifact "
                    "beside the graph", field="metadata.runtime.file")
            found.add(relative)
    return tuple(sorted(found))


def staged_copy(graph: SourceGraph, scratch: Path) -> Path:
    """A private copy of the graph and its external data (same relative layout) under `scratch`: the
    converters write temporary files beside their input, and the verified artifact folder must stay
    exactly its listed files."""
    base = graph.path.parent.relative_to(graph.folder)
    stage = scratch / "source"
    for relative in (graph.path.relative_to(graph.folder).as_posix(), *external_files(graph)):
        target = stage / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(graph.folder / relative, target)
    return stage / base / graph.path.name


def typed(source: Path) -> Path:
    """`source`, or beside it a copy declaring the type of every intermediate tensor that ONNX shape
    inference leaves untyped (it knows no ai.onnx.ml operator's outputs), as ONNX Runtime infers them.
    Both converters decide where casts and quantization go from declared types: a Scaler feeding a
    MatMul otherwise gets fp16 weights against fp32 activations, or no quantization at all."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - ORT infers what this could not
        inferred = model
    graph = inferred.graph
    known = {v.name for v in (*graph.value_info, *graph.input, *graph.output)} | {t.name for t in graph.initializer}
    missing = [name for node in graph.node for name in node.output if name and name not in known]
    if not missing:
        return source
    probe = onnx.ModelProto()
    probe.CopyFrom(inferred)
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in missing)
    probe_path = source.with_name("typed-probe.onnx")  # beside the source: its external data resolves
    onnx.save(probe, str(probe_path))
    try:
        outputs = graph_session(probe_path).get_outputs()
    finally:
        probe_path.unlink(missing_ok=True)
    elem_types = {f"tensor({name})": code for code, name in _ORT_TYPES.items()}
    for output in outputs:
        if output.name in missing and output.type in elem_types:
            inferred.graph.value_info.append(onnx.helper.make_tensor_value_info(output.name, elem_types[output.type], None))
    target = source.with_name("typed.onnx")
    onnx.save(inferred, str(target))
    return target


def op_inventory(path: Path) -> Counter:
    """(domain, op_type) -> count over the graph and its subgraphs; unknown domains are refused."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops: Counter = Counter()

    def visit(graph: Any) -> None:
        for node in graph.node:
            ops[(node.domain or "", node.op_type)] += 1
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    unknown = sorted({d for d, _ in ops if d not in ALLOWED_DOMAINS})
    if unknown:
        raise FailedPrecondition(f"the graph uses operator domains {unknown}; the compiler takes "
                                 f"{[d or 'ai.onnx' for d in ALLOWED_DOMAINS]}", field="metadata.runtime.file")
    return ops


def _describe(ops: Counter) -> str:
    names = sorted({f"{op} ({d})" if d not in ("", "ai.onnx") else op for d, op in ops})
    return ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def _standard(ops: Counter, allowed: frozenset[str]) -> set[str]:
    return {op for d, op in ops if d in ("", "ai.onnx") and op in allowed}


def check_io(path: Path, signature: ModelSignature) -> None:
    """The graph's inputs and outputs must be exactly the signature's (names, types, a dynamic batch)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    for role, values, tensors in (("inputs", model.graph.input, signature.inputs),
                                  ("outputs", model.graph.output, signature.outputs)):
        graph = {v.name: v for v in values if v.name not in initializers}
        if list(graph) != [t.name for t in tensors]:
            raise FailedPrecondition(f"the graph's {role} are {list(graph)}, metadata.signature names "
                                     f"{[t.name for t in tensors]}", field=f"metadata.signature.{role}")
        for t in tensors:
            value = graph[t.name].type.tensor_type
            dtype = ONNX_DTYPES.get(value.elem_type, str(value.elem_type))
            if dtype != t.dtype:
                raise FailedPrecondition(f"{role[:-1]} {t.name!r} is {dtype} in the graph, {t.dtype} in "
                                         "metadata.signature", field=f"metadata.signature.{role}")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.shape.dim]
            if value.HasField("shape") and dims and dims[0] != -1:
                raise FailedPrecondition(
                    f"{role[:-1]} {t.name!r} has a fixed batch dimension of {dims[0]}: a compiled graph "
                    "takes batches of any size; export it with a dynamic first dimension (torch.onnx.export "
                    "dynamic_shapes, skl2onnx/onnxmltools initial types with None)", field="metadata.runtime.file")


def _count(path: Path, types: Sequence[int]) -> int:
    """Weights (initializers and Constant tensors, any graph depth) of the given element types."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    total = 0

    def visit(graph: Any) -> None:
        nonlocal total
        total += sum(1 for t in graph.initializer if t.data_type in types)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t") and attribute.t.data_type in types:
                    total += 1
                if attribute.HasField("g"):
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    return total


def _nothing_to(target: str, ops: Counter, why: str) -> FailedPrecondition:
    kind = "a tree ensemble: its ai.onnx.ml tree operators compare features with thresholds and hold no " \
           "weight matrices" if any(op in TREE_OPS for _, op in ops) else f"its operators are {_describe(ops)}"
    return FailedPrecondition(
        f"{target} would change nothing in this graph ({kind}); {why}. The compiled output would be a "
        "useless copy of the source: serve the imported graph as it is", field="target")


def quantize_int8(graph: SourceGraph, out_dir: Path, scratch: Path, *, per_channel: bool, reduce_range: bool,
                  external: bool) -> tuple[str, ...]:
    """Notes on what was done; the int8 graph is written to out_dir/model.onnx (+ model.onnx.data)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ops = op_inventory(graph.path)
    if not _standard(ops, INT8_OPS):
        raise _nothing_to("int8", ops, "dynamic quantization rewrites the weights of MatMul, Gemm, Conv, "
                                       "Attention, LSTM and Gather operators only")
    notes = []
    stage = scratch / "int8-pre"
    stage.mkdir(parents=True, exist_ok=True)
    pre = stage / GRAPH_FILE
    try:
        source = staged_copy(graph, scratch)
        try:
            quant_pre_process(str(source), str(pre), save_as_external_data=external, all_tensors_to_one_file=True,
                              external_data_location=DATA_FILE)
            notes.append("onnxruntime quant_pre_process + quantize_dynamic(QInt8)")
        except Exception as exc:  # symbolic shape inference gives up on some ai.onnx.ml graphs
            first = str(exc).strip().splitlines()
            notes.append(f"quantize_dynamic(QInt8) without quant_pre_process, which failed on this graph "
                         f"({type(exc).__name__}: {first[0][:200] if first else ''})")
            pre = typed(source)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            quantize_dynamic(str(pre), str(out_dir / GRAPH_FILE), weight_type=QuantType.QInt8,
                             per_channel=per_channel, reduce_range=reduce_range, use_external_data_format=external)
        except Exception as exc:
            raise export_failure("ONNX Runtime int8 quantization", exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(scratch / "source", ignore_errors=True)
    if _count(out_dir / GRAPH_FILE, _INT8_TYPES) <= _count(graph.path, _INT8_TYPES):
        raise _nothing_to("int8", ops, "quantize_dynamic found no constant weight to quantize (the weights "
                                       "are computed in the graph, not stored in it)")
    return tuple(notes)


def convert_fp16(graph: SourceGraph, out_dir: Path, scratch: Path, *, external: bool) -> tuple[str, ...]:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    ops = op_inventory(graph.path)
    try:
        model = convert_float_to_float16(str(typed(staged_copy(graph, scratch))), keep_io_types=True)
    except Exception as exc:
        raise export_failure("ONNX Runtime float16 conversion", exc) from None
    finally:
        shutil.rmtree(scratch / "source", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_dir / GRAPH_FILE), save_as_external_data=external, all_tensors_to_one_file=True,
              location=DATA_FILE)
    if _count(out_dir / GRAPH_FILE, (_FP16_TYPE,)) <= _count(graph.path, (_FP16_TYPE,)):
        raise _nothing_to("fp16", ops, f"the float16 converter keeps {sorted(set(DEFAULT_OP_BLOCK_LIST) & {op for _, op in ops}) or 'these'} "
                                       "operators in fp32 and found no fp32 weight to convert")
    return ("onnxruntime.transformers.float16 convert_float_to_float16(keep_io_types=True): weights fp16, "
            "inputs/outputs as the source declares them",)


def graph_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def graph_runner(path: Path) -> GraphRun:
    """Runs the graph on one batch of its (single) input; every output by name."""
    session = graph_session(path)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(outputs, session.run(None, {name: x})))

    return run


def written_files(out_dir: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in out_dir.iterdir() if p.is_file()))
