"""`ProductionizeHandler`: an eager model (or an imported model's ONNX graph) -> compile -> validate ->
sign -> store -> Triton entry -> register.

A lifecycle handler like the artifact handlers: `policy_check` before any work, and one "compile"
lineage event (source artifact -> compiled artifact) after the record is registered. Nothing reaches
the object store before validation passed; objects are content-addressed and write-once, so a failure
after storing leaves only unreferenced blobs, never a registered record without its files. The record
carries the mesh signer's bundle over exactly its listed files; serving verifies it before loading.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlmesh.v1 import common_pb2
from services.compiler import build, converters
from services.compiler.compilers.base import Compiler
from services.compiler.compilers.onnx_graph import SourceGraph
from services.compiler.imported import build as imported_build
from services.compiler.lane import CompileLane
from services.compiler.registrar import RegistryPort
from services.compiler.signature import ModelSignature
from services.compiler.triton_config import CONFIG_FILE, write_entry
from services.compiler.validation import ValidationPolicy
from services.core.artifacts.handlers import MLOpsHandler
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import COMPILER_COMPILE
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, compiled_entity

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class Stages(Protocol):
    async def enter(self, stage: str, message: str = "") -> None:
        """Report the stage; raise Cancelled when the operation was asked to stop."""


class NoStages:
    async def enter(self, stage: str, message: str = "") -> None:
        return None


@dataclass(frozen=True)
class ProductionizeJob:
    source: common_pb2.Artifact
    compiler: Compiler
    target: str
    kwargs: Mapping[str, Any]  # effective (defaults filled in)
    max_batch_size: int
    policy: ValidationPolicy  # checked, batch sizes filled in
    module: Any  # the eager fp32 module (None for an imported graph)
    signature: ModelSignature
    work_dir: Path  # private to this job; the caller removes it
    operation_id: str = ""
    graph: SourceGraph | None = None  # an imported model's verified ONNX graph: compiled instead of `module`

    @property
    def recorded_kwargs(self) -> dict[str, Any]:
        """What the record carries (and its id hashes): every parameter that shaped the files."""
        return {**self.kwargs, "max_batch_size": self.max_batch_size}


@dataclass(frozen=True)
class ProductionizeResult:
    compiled: common_pb2.CompiledArtifact
    triton_entry: Path | None


def source_weights_size(artifact: common_pb2.Artifact) -> int:
    return sum(f.size for f in artifact.manifest.files if not f.path.endswith(".sha256"))


def entry_name(artifact: common_pb2.Artifact, target: str, digest: str) -> str:
    base = _NOT_NAME.sub("_", artifact.name).strip("._-")[:80] or "model"
    return f"{base}_{target}_{digest[:12]}"


class ProductionizeHandler(MLOpsHandler):
    def __init__(self, lane: CompileLane, store: StoreHandler, signer: ArtifactSigner, registry: RegistryPort,
                 bus: LineageBus, *, triton_root: Path | None, scope: str = COMPILER_COMPILE,
                 service: str = "compiler") -> None:
        super().__init__(bus, service=service)
        self.lane = lane
        self.store = store
        self.signer = signer
        self.registry = registry
        self.triton_root = triton_root
        self.scope = scope

    async def run(self, job: ProductionizeJob, stages: Stages | None = None) -> ProductionizeResult:
        stages = stages or NoStages()
        principal = self.authorize(self.scope)  # first: a refused caller causes no work at all
        entry, scratch = job.work_dir / "entry", job.work_dir / "scratch"
        await stages.enter("export", f"{job.compiler.alias}: {job.target}")
        if job.graph is None:
            output, signature = await self.lane.run(
                build.compile_output, job.compiler, job.target, job.kwargs, job.module, job.signature,
                job.max_batch_size, entry, scratch,
            )
        else:
            output, signature = await self.lane.run(
                imported_build.compile_graph_output, job.compiler, job.target, job.kwargs, job.graph, job.signature,
                entry, scratch,
            )
        await stages.enter("validate", f"batch sizes {list(job.policy.batch_sizes)}")
        if job.graph is None:
            compiled = await self.lane.run(
                build.validate_and_describe, job.compiler, job.target, job.kwargs, job.module, signature, output,
                job.max_batch_size, job.policy, entry,
            )
        else:
            compiled = await self.lane.run(
                imported_build.validate_graph_and_describe, job.compiler, job.target, job.kwargs, job.graph,
                signature, output, job.max_batch_size, job.policy, entry,
            )
        source_id = job.source.id
        weights = source_weights_size(job.source) if job.graph is None else await asyncio.to_thread(
            lambda: job.graph.size)  # an imported artifact also holds library files and its reference sample
        metrics = {**compiled.metrics, "size_ratio": compiled.model_size / weights if weights else 0.0}
        # Signed after validation, over exactly the files the record lists (what serving will verify).
        bundle = await asyncio.to_thread(self.signer.sign_files, entry, [f.path for f in compiled.files])
        await stages.enter("store", f"{len(compiled.files)} files")
        for f in compiled.files:
            await self.store.put_file(entry / f.path, expected_sha256=f.sha256, lineage={
                "artifact_id": source_id, "compiled_target": job.target, "path": f.path})
        triton_entry = await asyncio.to_thread(self._write_triton_entry, job, compiled)
        await stages.enter("register", compiled.primary.sha256)
        message = converters.compiled_message(source_id, job.compiler.alias, job.target, compiled,
                                              job.recorded_kwargs, metrics,
                                              signature=signature_message(self.signer, bundle))
        registered = await self.registry.register_compiled(message)
        await self.bus.emit(LineageEvent(
            operation="compile", actor=principal.subject, inputs=[artifact_entity(source_id)],
            outputs=[compiled_entity(registered.id)], service=self.service, operation_id=job.operation_id,
            parameters={
                "compiler": job.compiler.alias, "target": job.target, "kwargs": job.recorded_kwargs,
                "triton_platform": registered.triton_platform, "passed": bool(metrics["passed"]),
                "warned": bool(metrics["warned"]), "notes": list(compiled.output.notes),
                **({"on_behalf_of": principal.on_behalf_of} if principal.on_behalf_of else {}),
            },
        ))
        return ProductionizeResult(registered, triton_entry)

    def _write_triton_entry(self, job: ProductionizeJob, compiled: build.Compiled) -> Path | None:
        if self.triton_root is None:
            return None
        files = {f.path.split("/", 1)[1]: compiled.entry / f.path for f in compiled.files if f.path != CONFIG_FILE}
        config = (compiled.entry / CONFIG_FILE).read_text()
        return write_entry(self.triton_root, entry_name(job.source, job.target, compiled.digest), config, files)
