"""Long work: data.ml.pull / compile / run_skill start a durable operation and follow it to the end with
progress; data.ml.operation_status reads any operation (they live in the shared database)."""

from __future__ import annotations

from typing import Annotated, Any

from google.protobuf import struct_pb2
from pydantic import Field

from mlmesh.v1 import (
    common_pb2, compiler_pb2, compiler_pb2_grpc, operations_pb2, operations_pb2_grpc, puller_pb2, puller_pb2_grpc,
    registry_pb2, registry_pb2_grpc,
)
from services.core.auth import policy as p
from services.mcp_gateway import convert
from services.mcp_gateway.catalog import PREFIX, READ_ONLY, Args, Result, ToolCall, ToolSpec, writes
from services.mcp_gateway.errors import ToolFailure
from services.mcp_gateway.operations import follow
from services.mcp_gateway.tools.registry import Model

_OPS = (p.OPERATIONS_READ, p.OPERATIONS_CANCEL)
OperationId = Annotated[str, Field(description="The durable operation; data.ml.operation_status reads it.")]


def _unpack(op: operations_pb2.Operation, message):
    if not op.result.Unpack(message):
        raise ToolFailure("INTERNAL", f"operation {op.id} finished with an unexpected result type")
    return message


class PullArgs(Args):
    source: Annotated[str, Field(min_length=1, max_length=500, description=(
        "hf://ORG/NAME[@REVISION] or torchhub://OWNER/REPO[:REF]/ENTRY (TorchHub sources are allow-listed)."))]
    allow_patterns: Annotated[list[str], Field(max_length=100, description="Hugging Face: only matching files.")] = []
    name: Annotated[str, Field(max_length=200, description="Registry name; default the source's name.")] = ""
    aliases: Annotated[list[str], Field(max_length=20, description="Extra aliases ('latest' always moves).")] = []


class PullResult(Result):
    operation_id: OperationId
    model: Model


async def pull(call: ToolCall, a: PullArgs) -> dict:
    op = await call.unary(call.stub(puller_pb2_grpc.PullerStub).Pull, puller_pb2.PullRequest(
        source=a.source, allow_patterns=a.allow_patterns, name=a.name, aliases=a.aliases))
    final = await follow(call, op)
    return {"operation_id": op.id, "model": convert.artifact(_unpack(final, common_pb2.Artifact()))}


class Validation(Args):
    batch_sizes: Annotated[list[int], Field(max_length=16, description="Default 1, 7 and the maximum.")] = []
    tolerance_abs: Annotated[float, Field(ge=0, description="0 means the compiler's default.")] = 0.0
    tolerance_rel: Annotated[float, Field(ge=0)] = 0.0
    warn_only: Annotated[bool, Field(description="Record and warn instead of failing over tolerance.")] = False


class CompileArgs(Args):
    artifact: Annotated[str, Field(min_length=1, max_length=300, description="sha256:<hex>, name@alias or name.")]
    target: Annotated[str, Field(min_length=1, max_length=50, description=(
        "onnx, torchscript, pt2, int8, fp16 or tensorrt (or a compiler alias)."))]
    kwargs: Annotated[dict[str, Any], Field(description="Compiler parameters; unknown keys are refused.")] = {}
    validation: Validation = Validation()
    max_batch_size: Annotated[int, Field(ge=0, le=65536, description="Dynamic batch bound; 0 means 64.")] = 0


class CompiledValidation(Result):
    passed: bool
    warned: bool
    batch_sizes: list[int]
    max_abs_error: float
    max_rel_error: float
    accuracy_delta: float
    size_ratio: float


class Compiled(Result):
    id: str = Field(description="Deploy it with data.ml.serve model='compiled:<id>'.")
    source_artifact_id: str
    compiler: str
    target: str
    sha256: str
    size: int
    triton_platform: str
    signed: bool = Field(description="Carries the compiler's signature; serving verifies it before loading.")
    tool_versions: dict[str, str]
    validation: CompiledValidation
    created_at: str


class CompileResult(Result):
    operation_id: OperationId
    compiled: Compiled


async def compile_(call: ToolCall, a: CompileArgs) -> dict:
    kwargs = struct_pb2.Struct()
    kwargs.update(a.kwargs)
    v = a.validation
    op = await call.unary(call.stub(compiler_pb2_grpc.CompilerStub).Compile, compiler_pb2.CompileRequest(
        artifact=a.artifact, target=a.target, kwargs=kwargs, max_batch_size=a.max_batch_size,
        validation=compiler_pb2.ValidationPolicy(batch_sizes=v.batch_sizes, tolerance_abs=v.tolerance_abs,
                                                 tolerance_rel=v.tolerance_rel, warn_only=v.warn_only)))
    final = await follow(call, op)
    return {"operation_id": op.id, "compiled": convert.compiled(_unpack(final, common_pb2.CompiledArtifact()))}


class RunSkillArgs(Args):
    skill: Annotated[str, Field(min_length=1, max_length=300, description=(
        "name, name@latest, name@<version or 8+ hex prefix> or name@<number>."))]
    inputs: Annotated[dict[str, Any], Field(description="The skill's inputs, as its spec declares them.")] = {}
    experiment_id: str = ""
    test_id: str = ""
    reresolve_aliases: Annotated[bool, Field(description="Resolve aliases now instead of the version's lock.")] = False


class Step(Result):
    step_id: str
    interface: str
    model: str
    resolved_model: str
    output: dict[str, Any]
    duration_ms: float
    error: str


class Run(Result):
    id: str
    status: str
    outputs: dict[str, Any]
    steps: list[Step]
    resolved: dict[str, str]
    duration_ms: float


class RunSkillResult(Result):
    operation_id: OperationId
    skill: str
    skill_version: str
    run: Run


async def run_skill(call: ToolCall, a: RunSkillArgs) -> dict:
    stub = call.stub(registry_pb2_grpc.RegistryStub)
    # Resolved first: an unknown skill or version is refused by name before any run is recorded.
    version = await call.unary(stub.GetSkill, registry_pb2.GetSkillRequest(ref=a.skill))
    inputs = struct_pb2.Struct()
    inputs.update(a.inputs)
    op = await call.unary(stub.RunSkill, registry_pb2.RunSkillRequest(
        ref=f"{version.name}@{version.version}", inputs=inputs, experiment_id=a.experiment_id, test_id=a.test_id,
        reresolve_aliases=a.reresolve_aliases))
    run = _unpack(await follow(call, op), registry_pb2.SkillRun())
    if run.status == registry_pb2.SKILL_RUN_STATUS_FAILED:
        raise ToolFailure("SKILL_FAILED", f"skill run {run.id} failed at step {run.failed_step!r}: {run.error}")
    return {"operation_id": op.id, "skill": version.name, "skill_version": version.version, "run": {
        "id": run.id, "status": convert.enum_name(registry_pb2.SkillRunStatus, run.status, "SKILL_RUN_STATUS_"),
        "outputs": convert.struct(run.outputs), "resolved": dict(run.resolved), "duration_ms": run.duration_ms,
        "steps": [{"step_id": s.step_id, "interface": s.interface, "model": s.model,
                   "resolved_model": s.resolved_model, "output": convert.struct(s.output),
                   "duration_ms": s.duration_ms, "error": s.error} for s in run.steps]}}


class OperationStatusArgs(Args):
    operation_id: Annotated[str, Field(min_length=1, max_length=200)]


class OperationProgress(Result):
    done: int
    total: int
    unit: str
    stage: str
    message: str


class OperationError(Result):
    code: str
    message: str
    field: str


class Operation(Result):
    id: str
    kind: str
    service: str
    state: str = Field(description="pending, running, succeeded, failed or cancelled.")
    progress: OperationProgress
    result: dict[str, Any] | None
    error: OperationError | None
    cancel_requested: bool
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str


class OperationStatusResult(Result):
    operation: Operation


async def operation_status(call: ToolCall, a: OperationStatusArgs) -> dict:
    stub = call.stub(operations_pb2_grpc.OperationsStub)
    op = await call.unary(stub.GetOperation, operations_pb2.GetOperationRequest(id=a.operation_id))
    return {"operation": convert.operation(op)}


TOOLS = [
    ToolSpec(name=PREFIX + "pull", title="Pull a model", description=(
        "Pull a model from Hugging Face or TorchHub, verify it, store it and register it; reports progress."),
        scope=p.PULLER_PULL, service="puller", backend_scopes=(p.PULLER_PULL, *_OPS), args=PullArgs,
        result=PullResult, annotations=writes(destructive=False, idempotent=True, open_world=True), run=pull),
    ToolSpec(name=PREFIX + "compile", title="Compile a model", description=(
        "Compile an artifact to ONNX, TorchScript/AOTInductor, int8/fp16 or TensorRT, validated against the "
        "eager model; reports progress."), scope=p.COMPILER_COMPILE, service="compiler",
        backend_scopes=(p.COMPILER_COMPILE, *_OPS), args=CompileArgs, result=CompileResult,
        annotations=writes(destructive=False, idempotent=True), run=compile_),
    ToolSpec(name=PREFIX + "run_skill", title="Run a skill", description=(
        "Run a hash-locked skill version; the run and each step are recorded in the ledger; reports progress."),
        scope=p.SKILLS_RUN, service="registry", backend_scopes=(p.SKILLS_RUN, p.REGISTRY_READ, *_OPS),
        args=RunSkillArgs, result=RunSkillResult, annotations=writes(destructive=False, idempotent=False),
        run=run_skill, renames={"ref": "skill"}),
    ToolSpec(name=PREFIX + "operation_status", title="Operation status", description=(
        "The state, progress, result or error of a pull, compile or skill-run operation."),
        scope=p.OPERATIONS_READ, service="registry", backend_scopes=(p.OPERATIONS_READ,),
        args=OperationStatusArgs, result=OperationStatusResult, annotations=READ_ONLY, run=operation_status,
        renames={"id": "operation_id"}),
]
