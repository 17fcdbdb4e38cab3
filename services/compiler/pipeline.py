"""The compile: a domain object that checks a request at once, then runs it as a durable operation.

Checked before any operation exists (each a precise status, fast): the target (INVALID_ARGUMENT
naming `target`, with the known ones), the compiler's availability here (FAILED_PRECONDITION with
the reason), max_batch_size and the validation policy, every kwarg (INVALID_ARGUMENT naming
`kwargs.<name>`), the artifact (NOT_FOUND), and whether the compiler can take the model at all
(FAILED_PRECONDITION: no architecture, an unknown one, text input). The operation then runs the
stages load -> export -> validate -> store -> register, reporting each as progress.

An imported model (docs/byom.md: manifest framework onnx, xgboost or lightgbm) is checked against its
contract instead (imported/contract.py), its files are materialised verified rather than loaded as
weights, and its ONNX graph is what compiles (int8, fp16), validated against itself.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mlmesh.v1 import common_pb2
from services.compiler import converters
from services.compiler.compilers.onnx_graph import SourceGraph
from services.compiler.compilers.registry import CompilerCatalog, Resolved
from services.compiler.imported.contract import ImportedModel, check_target, imported_model, is_imported
from services.compiler.lane import CompileLane
from services.compiler.models import known_architectures, load_module
from services.compiler.productionize import ProductionizeHandler, ProductionizeJob
from services.compiler.registrar import RegistryPort, resolve_artifact
from services.compiler.settings import CompilerSettings
from services.compiler.signature import ModelSignature, signature_for
from services.compiler.spec import CompileSpec
from services.compiler.validation import ValidationPolicy
from services.core.artifacts.load import LoadHandler
from services.core.artifacts.manifest import Manifest
from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.operations.runner import OperationRunner, ProgressReporter
from services.core.operations.store import Operation

KIND = "compile"
STAGES = ("load", "export", "validate", "store", "register")


class OperationStages:
    """Stages as operation progress (step n of 5); entering one is also where a cancel takes effect."""

    def __init__(self, reporter: ProgressReporter) -> None:
        self._reporter = reporter

    async def enter(self, stage: str, message: str = "") -> None:
        await self._reporter.check_cancel()
        await self._reporter.progress(STAGES.index(stage) + 1, len(STAGES), "steps", stage, message)


def source_graph(folder: Path, manifest: Manifest, model: ImportedModel) -> SourceGraph:
    """The imported model's graph in its verified (materialised) folder."""
    return SourceGraph(
        folder / model.graph_file, folder, frozenset(f.path for f in manifest.files),
        folder / model.reference_file if model.reference_file else None, label=model.graph_file,
    )


@dataclass(frozen=True)
class _Checked:
    artifact: common_pb2.Artifact
    manifest: Manifest
    resolved: Resolved
    kwargs: dict
    max_batch_size: int
    policy: ValidationPolicy
    signature: ModelSignature
    imported: ImportedModel | None = None


@dataclass
class CompilePipeline:
    runner: OperationRunner
    catalog: CompilerCatalog
    registry: RegistryPort
    loader: LoadHandler
    productionize: ProductionizeHandler
    lane: CompileLane
    settings: CompilerSettings
    work_root: Path

    async def check(self, spec: CompileSpec) -> _Checked:
        resolved = self.catalog.available(spec.target)
        max_batch_size = spec.max_batch_size or self.settings.default_max_batch_size
        if not 1 <= max_batch_size <= self.settings.max_batch_size_limit:
            raise InvalidArgument(f"must be between 1 and {self.settings.max_batch_size_limit} (0: "
                                  f"{self.settings.default_max_batch_size})", field="max_batch_size")
        policy = spec.validation.checked(max_batch_size)
        kwargs = resolved.compiler.check(resolved.target, spec.kwargs, None)
        artifact = await resolve_artifact(self.registry, spec.artifact)
        manifest = converters.manifest(artifact)
        imported = None
        if is_imported(manifest):  # a user's own model: its ONNX graph is what compiles
            imported = imported_model(manifest)
            check_target(resolved, imported, self.catalog)
            kwargs = resolved.compiler.check_graph(resolved.target, spec.kwargs, kwargs)
            signature = imported.signature
        else:
            signature = signature_for(manifest.metadata)
            kind = manifest.metadata["architecture"].get("type")
            if kind not in known_architectures():
                raise FailedPrecondition(f"cannot rebuild architecture {kind!r}; the compiler knows "
                                         f"{known_architectures()}", field="metadata.architecture.type")
        resolved.compiler.check_signature(resolved.target, kwargs, signature)
        return _Checked(artifact, manifest, resolved, kwargs, max_batch_size, policy, signature, imported)

    async def start(self, spec: CompileSpec, *, actor: str) -> Operation:
        checked = await self.check(spec)
        request = {**spec.public(), "artifact_id": checked.artifact.id, "compiler": checked.resolved.compiler.alias,
                   "resolved_target": checked.resolved.target}
        return await self.runner.start(KIND, request, partial(self._run, checked), created_by=actor)

    async def _run(self, checked: _Checked, reporter: ProgressReporter) -> common_pb2.CompiledArtifact:
        stages = OperationStages(reporter)
        work_dir = self.work_root / f"compile-{reporter.operation_id}"
        try:
            await stages.enter("load", checked.artifact.id)
            module = graph = None
            if checked.imported is None:
                loaded = await self.loader.load(checked.manifest, checked.artifact.signature.bundle,
                                                expected_id=checked.artifact.id)
                module = await self.lane.run(load_module, checked.manifest.metadata["architecture"],
                                             loaded.state_dict)
            else:  # every file fetched and checked against the manifest, the signature verified
                folder = await self.loader.materialise(checked.manifest, checked.artifact.signature.bundle,
                                                       expected_id=checked.artifact.id)
                graph = source_graph(folder, checked.manifest, checked.imported)
            result = await self.productionize.run(ProductionizeJob(
                source=checked.artifact, compiler=checked.resolved.compiler, target=checked.resolved.target,
                kwargs=checked.kwargs, max_batch_size=checked.max_batch_size, policy=checked.policy, module=module,
                signature=checked.signature, work_dir=work_dir, operation_id=reporter.operation_id, graph=graph,
            ), stages)
            return result.compiled
        finally:
            await asyncio.to_thread(shutil.rmtree, work_dir, True)
