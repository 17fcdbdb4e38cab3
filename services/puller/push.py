"""The push: a user's own model from their disk, received in chunks, then run as a durable operation that
ends the way a pull does, as a verified, signed, content-addressed artifact with lineage.

receive (header checked, bytes staged and hashed; a stream cut short removes the folder) -> operation:
inspect (format, safety checks, signature, conversion with parity, reference statistics; in a throw-away
subprocess) -> manifest of the folder -> sign -> put each file into the object store -> register -> emit
"push". Nothing reaches the object store before inspection accepted the model, and objects are
write-once and content-addressed, so a failure or a cancel at any point leaves nothing half-stored.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mlmesh.v1 import common_pb2
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import PULLER_ALLOW_PICKLE, policy_check
from services.core.clients.registry import RegistryClient
from services.core.artifacts.manifest import Manifest
from services.core.errors import InvalidArgument, NotFound
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, source_entity
from services.core.operations.runner import OperationRunner, ProgressReporter
from services.core.operations.store import Operation
from services.puller.assemble import manifest_of_folder
from services.puller.formats import ImportedModel, ImportOptions
from services.puller.upload import PushSpec, StagedUpload, check_spec

KIND = "push"
log = logging.getLogger("mlmesh.puller")

Progress = Callable[[str, str], None]
Inspector = Callable[..., Awaitable[ImportedModel]]  # (folder, options, *, progress)


@dataclass(frozen=True)
class Chunk:
    path: str
    offset: int
    data: bytes


@dataclass
class PushPipeline:
    runner: OperationRunner
    inspect: Inspector
    store: StoreHandler
    signer: ArtifactSigner
    registry: RegistryClient
    bus: LineageBus
    staging_root: Path
    max_bytes: int
    service: str = "puller"

    async def receive(self, spec: PushSpec, chunks: AsyncIterator[Chunk], *, actor: str) -> Operation:
        """Stage every file of `spec` from `chunks`, then start the operation that turns them into an artifact.
        Any failure before the operation starts (bad header, bad chunk, a stream cut short) removes the upload."""
        check_spec(spec, max_bytes=self.max_bytes)
        if spec.allow_pickle:
            policy_check(PULLER_ALLOW_PICKLE)  # loading pickle at all is an operator's decision
        self.staging_root.mkdir(parents=True, exist_ok=True)
        upload = StagedUpload(spec, self.staging_root / f"push-{uuid.uuid4().hex}")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(upload.write, chunk.path, chunk.offset, chunk.data)
            upload.finish()
            work = partial(self._run, upload, actor)
            return await self.runner.start(KIND, spec.public(), work, created_by=actor)
        except BaseException:
            upload.discard()  # not awaited: a cut stream cancels this task, and the folder must go regardless
            raise

    def discard_stale(self) -> int:
        """Remove the staging folders a stopped puller left (their operations were recorded interrupted at
        start-up); call before serving. The number removed."""
        stale = list(self.staging_root.glob("push-*")) if self.staging_root.is_dir() else []
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return len(stale)

    async def _run(self, upload: StagedUpload, actor: str, reporter: ProgressReporter) -> common_pb2.Artifact:
        spec = upload.spec
        try:
            await reporter.progress(0, 0, "", "inspect", f"inspecting {len(spec.files)} file(s)")
            imported = await self.inspect(upload.model_dir, _options(spec, upload), progress=_progress_to(reporter))
            await reporter.check_cancel()
            await reporter.progress(0, 0, "", "store", "signing and storing")
            manifest = await asyncio.to_thread(manifest_of_folder, upload.model_dir, framework=imported.framework,
                                               fmt=imported.format, metadata=imported.metadata)
            signature = await self._existing_signature(manifest.artifact_id)
            if signature is None:  # new content: signed and stored; known content keeps its record and objects
                signature = await self._sign_and_store(upload, manifest)
            await reporter.check_cancel()  # the last point a cancel applies: registration is visible
            await reporter.progress(0, 0, "", "register", manifest.artifact_id)
            artifact = await self.registry.register_artifact(
                manifest, name=spec.name, aliases=spec.aliases, source_uri=_source(spec),
                labels={"source": "push", "format": imported.framework}, signature=signature,
            )
            await self.bus.emit(LineageEvent(
                operation=KIND, actor=actor, inputs=[source_entity(_source(spec))],
                outputs=[artifact_entity(artifact.id)], service=self.service, operation_id=reporter.operation_id,
                parameters=_lineage_parameters(spec, imported),
            ))
            log.info("push %s by %s: %s -> %s (%s, %s)", reporter.operation_id, actor, spec.upload_digest,
                     artifact.id, spec.name, imported.framework)
            return artifact
        finally:
            await asyncio.to_thread(shutil.rmtree, upload.folder, True)

    async def _existing_signature(self, artifact_id: str) -> common_pb2.Signature | None:
        try:
            return (await self.registry.get_artifact(artifact_id)).signature
        except NotFound:
            return None

    async def _sign_and_store(self, upload: StagedUpload, manifest: Manifest) -> common_pb2.Signature:
        bundle = await asyncio.to_thread(self.signer.sign, upload.model_dir)
        lineage = {"artifact_id": manifest.artifact_id, "source": _source(upload.spec)}
        for entry in manifest.files:
            await self.store.put_file(upload.model_dir / entry.path, lineage={**lineage, "path": entry.path},
                                      expected_sha256=entry.sha256)
        await self.store.put_bytes(bundle, lineage={**lineage, "path": "signature"})
        return signature_message(self.signer, bundle)


def _source(spec: PushSpec) -> str:
    return f"upload:{spec.upload_digest}"


def _options(spec: PushSpec, upload: StagedUpload) -> ImportOptions:
    return ImportOptions(format=spec.format, interface=spec.interface, feature_names=spec.feature_names,
                         labels=spec.labels, window=spec.window, allow_pickle=spec.allow_pickle,
                         reference=str(upload.reference_path) if upload.reference_path else "")


def _progress_to(reporter: ProgressReporter) -> Progress:
    """The inspector's stage reports as the operation's progress (written by the reporter's own throttle)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    def report(stage: str, message: str) -> None:
        task = loop.create_task(reporter.progress(0, 0, "", stage, message[:200]))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return report


def _lineage_parameters(spec: PushSpec, imported: ImportedModel) -> dict:
    metadata = imported.metadata
    conversion = metadata.get("conversion") if isinstance(metadata.get("conversion"), dict) else {}
    return {
        "upload": spec.upload_digest, "name": spec.name, "format": imported.framework,
        "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in spec.files],
        "reference_sha256": spec.reference.sha256 if spec.reference else "",
        "interfaces": list(metadata.get("interfaces") or []), "served": conversion.get("served", ""),
    }


def header_required(field: str = "header") -> InvalidArgument:
    return InvalidArgument("a push starts with its header, once", field=field)
