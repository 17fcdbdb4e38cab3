"""What every compiler is: declared parameters, availability, tolerances, `compile` and a way to run
its output. Compile and run are blocking and called from the compile lane (one worker thread)."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from services.compiler.settings import CompilerSettings
from services.compiler.signature import ModelSignature
from services.core.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from services.compiler.compilers.onnx_graph import GraphJob, GraphRun

_TYPES = {"int": int, "float": float, "bool": bool, "string": str, "list": list}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Param:
    """One compiler parameter, as ListCompilers shows it and as `kwargs.<name>` is checked."""

    name: str
    type: str
    description: str
    default: Any
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    targets: tuple[str, ...] = ()  # empty: applies to every target of the compiler

    def parse(self, value: Any) -> Any:
        field_name = f"kwargs.{self.name}"
        if self.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)  # a protobuf Struct carries every number as a double
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = _TYPES[self.type]
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise InvalidArgument(f"must be of type {self.type}", field=field_name)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument("must be a finite number", field=field_name)
        if self.choices and value not in self.choices:
            raise InvalidArgument(f"must be one of {list(self.choices)}", field=field_name)
        if self.minimum is not None and value < self.minimum:
            raise InvalidArgument(f"must be >= {self.minimum:g}", field=field_name)
        if self.maximum is not None and value > self.maximum:
            raise InvalidArgument(f"must be <= {self.maximum:g}", field=field_name)
        return value


# Every compiler accepts these: they shape the Triton entry written beside the output.
COMMON_PARAMS = (
    Param("dynamic_batching", "bool", "Triton entry: let Triton's dynamic batcher group requests "
          "(off: mlmesh's scheduler forms the batches).", False),
    Param("max_queue_delay_us", "int", "Triton entry: dynamic batcher's extra wait for a fuller batch.", 100,
          minimum=0, maximum=1_000_000),
)


@dataclass(frozen=True)
class Tolerance:
    abs: float
    rel: float


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class CompileJob:
    """Everything a compile needs: the eager fp32 module, its signature, an example batch (>= 2 rows,
    so exporters do not specialise the batch dimension to 1), and private folders."""

    module: Any
    signature: ModelSignature
    example: Any
    max_batch_size: int
    target: str
    kwargs: Mapping[str, Any]
    out_dir: Path
    scratch: Path  # intermediate files (an fp32 export before quantization, ...); not part of the output


@dataclass(frozen=True)
class CompileOutput:
    """Files in `folder` (the Triton version folder's contents); `primary` is the model file."""

    folder: Path
    primary: str
    files: tuple[str, ...]
    triton_platform: str
    tool_versions: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    instance_kind: str = ""  # Triton instance_group kind; "" lets Triton choose (GPU when present)

    @property
    def size(self) -> int:
        return sum((self.folder / name).stat().st_size for name in self.files)


Runner = Callable[[np.ndarray], np.ndarray]


class Compiler:
    """Base of the compilers. A subclass declares targets and parameters and implements `compile` and
    `runner`; `@register_compiler("alias")` sets `alias` and makes it known to the catalog."""

    alias: ClassVar[str] = ""
    targets: ClassVar[tuple[str, ...]] = ()
    graph_targets: ClassVar[tuple[str, ...]] = ()  # targets it also makes from an imported ONNX graph
    output_format: ClassVar[str] = ""
    parameters: ClassVar[tuple[Param, ...]] = ()
    tolerances: ClassVar[Mapping[str, Tolerance]] = {}

    def __init__(self, settings: CompilerSettings) -> None:
        self.settings = settings

    @property
    def default_target(self) -> str:
        return self.targets[0]

    def all_parameters(self) -> tuple[Param, ...]:
        return (*self.parameters, *COMMON_PARAMS)

    def availability(self) -> Availability:
        return Availability(True)

    def tool_versions(self) -> dict[str, str]:
        return {}

    def check(self, target: str, kwargs: Mapping[str, Any], signature: ModelSignature | None) -> dict[str, Any]:
        """The effective kwargs (defaults filled in); refuses unknown names, bad values, and (when the
        signature is known) models this compiler cannot take."""
        known = {p.name: p for p in self.all_parameters()}
        for name in kwargs:
            if name not in known:
                raise InvalidArgument(
                    f"not a parameter of the {self.alias} compiler; known: {sorted(known)}", field=f"kwargs.{name}"
                )
        effective = {}
        for name, param in known.items():
            if param.targets and target not in param.targets:
                if name in kwargs:
                    raise InvalidArgument(f"applies to target(s) {list(param.targets)} only", field=f"kwargs.{name}")
                continue
            effective[name] = param.parse(kwargs[name]) if name in kwargs else param.default
        if signature is not None:
            self.check_signature(target, effective, signature)
        return effective

    def check_signature(self, target: str, kwargs: Mapping[str, Any], signature: ModelSignature) -> None:
        if signature.text_input:
            raise FailedPrecondition(
                f"the model's input is text ({signature.text_reason}); a compiled {target} graph takes numeric "
                "tensors only, so it could not take the model's input. Serve it in-process instead.",
                field="artifact",
            )

    def tolerance(self, target: str, kwargs: Mapping[str, Any]) -> Tolerance:
        return self.tolerances[target]

    def compile(self, job: CompileJob) -> CompileOutput:
        raise NotImplementedError

    def runner(self, output: CompileOutput) -> Runner:
        raise NotImplementedError

    # ---- imported ONNX graphs (docs/byom.md), for the targets in `graph_targets` ----

    def check_graph(self, target: str, requested: Mapping[str, Any], effective: dict[str, Any]) -> dict[str, Any]:
        """The effective kwargs for an imported graph (`requested`: what the caller gave); refuses
        parameters that only shape torch exports."""
        return effective

    def compile_graph(self, job: "GraphJob") -> CompileOutput:
        raise NotImplementedError

    def graph_runner(self, output: CompileOutput) -> "GraphRun":
        """Runs a compiled graph on one batch: every output by name."""
        raise NotImplementedError

    def run_outputs(self, output: CompileOutput, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The output's answers for each input batch (TensorRT overrides this to run out of process)."""
        run = self.runner(output)
        return [np.asarray(run(x)) for x in inputs]


def export_failure(what: str, exc: BaseException) -> FailedPrecondition:
    """The exporter's reason in a few lines (its root cause and the model line it stopped at), not
    its stack trace or its advice on filing bugs."""
    text = _ANSI.sub("", str(exc))
    root = exc.__cause__ or exc
    root_text = _ANSI.sub("", str(root)).strip().splitlines()
    reason = f"{type(root).__name__}: {root_text[0] if root_text else ''}".strip()
    summary = re.search(r"## Exception summary\s+<class '[\w.]*?(\w+)'>: ([^\n]+)", text)
    if summary:
        reason = f"{summary.group(1)}: {summary.group(2).strip()}"
    where = re.search(r"raised this error:\s+File \"[^\"]*\", line \d+, in (\w+)\s+([^\n]+)", text)
    if where:
        reason += f" (in {where.group(1)}: `{where.group(2).strip()}`)"
    return FailedPrecondition(f"{what} failed: {reason[:600]}", field="artifact")


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """Exports see plain modules: the fused MHA fast path (inference-only kernels that tracing bakes in
    and dynamic quantization breaks) is off while a compile runs in the lane, and restored after."""
    import torch

    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(False), torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
