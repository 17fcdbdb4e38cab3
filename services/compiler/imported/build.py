"""The compile core for an imported ONNX graph, blocking and free of I/O beyond its folders (build.py's
counterpart): a verified source graph in, a validated Triton entry folder out (config.pbtxt + 1/model.onnx)
with its metrics. The entry is described, checked and hashed by build.describe, like every output.

The compiled graph keeps the source graph's tensor names, types and per-row shapes (metadata.signature),
and the Triton config says them; a tensor of one value per row (a graph shape [batch]) is dims [1] with
a reshape to [].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.compiler.build import VERSION, Compiled, describe
from services.compiler.compilers.base import CompileOutput, Compiler
from services.compiler.compilers.onnx_graph import GraphJob, SourceGraph, check_io, external_files, graph_runner
from services.compiler.imported.validation import graph_batches, load_reference, validate_graph
from services.compiler.signature import ModelSignature
from services.compiler.validation import ValidationPolicy
from services.core.errors import FailedPrecondition


def compile_graph_output(compiler: Compiler, target: str, kwargs: Mapping[str, Any], graph: SourceGraph,
                         signature: ModelSignature, entry: Path, scratch: Path) -> tuple[CompileOutput, ModelSignature]:
    """Compile `graph` into `entry`/1 after checking it against the artifact's contract."""
    external_files(graph)  # refuses external data outside the artifact's verified files
    check_io(graph.path, signature)
    output = compiler.compile_graph(GraphJob(graph, signature, target, kwargs, entry / VERSION, scratch))
    try:
        check_io(output.folder / output.primary, signature)
    except FailedPrecondition as exc:  # the converters keep names and IO types; say so if one did not
        raise FailedPrecondition(f"the compiled graph does not keep the source's tensors: {exc.message}",
                                 field="validation") from None
    sample = (f"the artifact's reference sample ({graph.reference.name})" if graph.reference is not None
              else "a sample drawn around metadata.training_stats" if signature.mean is not None
              else "a standard normal sample (the artifact has no reference sample or training_stats)")
    return replace(output, notes=(*output.notes, f"validated against the source graph on {sample}")), signature


def validate_graph_and_describe(compiler: Compiler, target: str, kwargs: Mapping[str, Any], graph: SourceGraph,
                                signature: ModelSignature, output: CompileOutput, max_batch_size: int,
                                policy: ValidationPolicy, entry: Path) -> Compiled:
    reference = load_reference(graph.reference, signature, graph.reference.name) if graph.reference else None
    metrics = validate_graph(
        lambda: graph_runner(graph.path), lambda: compiler.graph_runner(output), signature,
        graph_batches(signature, policy, reference), policy, policy.tolerance(compiler.tolerance(target, kwargs)),
    )
    return describe(output, signature, kwargs, max_batch_size, entry, metrics)


def compile_graph_and_validate(compiler: Compiler, target: str, kwargs: Mapping[str, Any], graph: SourceGraph,
                               signature: ModelSignature, max_batch_size: int, policy: ValidationPolicy,
                               entry: Path, scratch: Path) -> Compiled:
    """Both steps at once (the service runs them as two progress stages)."""
    output, signature = compile_graph_output(compiler, target, kwargs, graph, signature, entry, scratch)
    return validate_graph_and_describe(compiler, target, kwargs, graph, signature, output, max_batch_size, policy,
                                       entry)
