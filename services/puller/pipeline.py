"""The pull: a domain object that validates a request, runs it as a durable operation, and turns a
verified download into a stored, signed, registered artifact with lineage.

Order inside the operation: fetch (every file downloaded and verified into a private staging folder)
-> build the artifact folder -> sign -> put each file into the object store -> register -> emit
"pull". Nothing reaches the object store before every file passed verification, and objects are
write-once and content-addressed, so a cancel or a failure at any point leaves no partial object.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from mlmesh.v1 import common_pb2
from services.core.artifacts.save import SaveHandler
from services.core.artifacts.signing import ArtifactSigner, signature_message
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import PULLER_ALLOW_PICKLE, policy_check
from services.core.clients.registry import RegistryClient
from services.core.errors import InvalidArgument
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, source_entity
from services.core.naming import check_alias, check_name
from services.core.operations.runner import OperationRunner, ProgressReporter
from services.core.operations.store import Operation
from services.puller.adapters.base import Fetched, PullOptions
from services.puller.assemble import build_folder
from services.puller.sources import HFSource, Source, TorchHubSource, parse_source

KIND = "pull"
log = logging.getLogger("mlmesh.puller")
_MAX_PATTERNS = 64


class Adapter(Protocol):
    def check(self, source: Any, options: PullOptions) -> Any: ...

    async def fetch(self, source: Any, options: PullOptions, reporter: ProgressReporter | None,
                    staging: Path) -> Fetched: ...


@dataclass(frozen=True)
class PullSpec:
    """A pull request as the domain sees it; `public()` is what the operation stores (no secrets)."""

    source: str
    allow_patterns: tuple[str, ...] = ()
    name: str = ""
    aliases: tuple[str, ...] = ()
    allow_pickle: bool = False

    def public(self) -> dict[str, Any]:
        return {"source": self.source, "allow_patterns": list(self.allow_patterns), "name": self.name,
                "aliases": list(self.aliases), "allow_pickle": self.allow_pickle}


@dataclass
class PullPipeline:
    runner: OperationRunner
    hf: Adapter
    torchhub: Adapter
    store: StoreHandler
    saver: SaveHandler
    signer: ArtifactSigner
    registry: RegistryClient
    bus: LineageBus
    staging_root: Path
    service: str = "puller"
    _adapters: dict[type, Adapter] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._adapters = {HFSource: self.hf, TorchHubSource: self.torchhub}

    async def start(self, spec: PullSpec, *, actor: str) -> Operation:
        """Validate (no request leaves before the allow-list said yes), then start the operation."""
        source = parse_source(spec.source)
        _check_spec(spec, source)
        if spec.allow_pickle:
            policy_check(PULLER_ALLOW_PICKLE)  # loading pickle at all is an operator's decision
        adapter = self._adapters[type(source)]
        options = PullOptions(spec.allow_patterns, spec.allow_pickle)
        adapter.check(source, options)
        work = partial(self._run, source, adapter, options, spec, actor)
        return await self.runner.start(KIND, spec.public(), work, created_by=actor)

    async def _run(self, source: Source, adapter: Adapter, options: PullOptions, spec: PullSpec, actor: str,
                   reporter: ProgressReporter) -> common_pb2.Artifact:
        staging = self.staging_root / f"pull-{reporter.operation_id}"
        try:
            fetched = await adapter.fetch(source, options, reporter, staging)
            await reporter.check_cancel()
            await reporter.progress(0, 0, "", "store", "signing and storing")
            if isinstance(source, TorchHubSource):
                manifest, signature = await self._save_converted(fetched)
            else:
                manifest, signature = await self._store_folder(staging, fetched)
            await reporter.check_cancel()  # the last point a cancel applies: registration is visible
            await reporter.progress(0, 0, "", "register", manifest.artifact_id)
            artifact = await self.registry.register_artifact(
                manifest, name=spec.name or source.default_name, aliases=spec.aliases,
                source_uri=fetched.source_uri, signature=signature,
            )
            await self.bus.emit(LineageEvent(
                operation=KIND, actor=actor, inputs=[source_entity(fetched.source_uri)],
                outputs=[artifact_entity(artifact.id)], service=self.service, operation_id=reporter.operation_id,
                parameters={"source": spec.source, **fetched.parameters},
            ))
            log.info("pull %s: %s -> %s (%s)", reporter.operation_id, fetched.source_uri, artifact.id, artifact.name)
            return artifact
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _save_converted(self, fetched: Fetched):
        """A single converted state dict (TorchHub): the SaveHandler writes, signs and stores it."""
        (state_dict,) = fetched.state_dicts.values()
        metadata = {k: v for k, v in fetched.metadata.items() if k != "architecture"}
        saved = await self.saver.save(
            state_dict, architecture=fetched.metadata.get("architecture"), metadata=metadata,
            source=fetched.source_uri,
        )
        return saved.manifest, signature_message(self.signer, saved.signature)

    async def _store_folder(self, staging: Path, fetched: Fetched):
        manifest = await asyncio.to_thread(build_folder, staging, fetched)
        bundle = await asyncio.to_thread(self.signer.sign, staging)
        lineage = {"artifact_id": manifest.artifact_id, "source": fetched.source_uri}
        for entry in manifest.files:
            await self.store.put_file(staging / entry.path, lineage={**lineage, "path": entry.path},
                                      expected_sha256=entry.sha256)
        await self.store.put_bytes(bundle, lineage={**lineage, "path": "signature"})
        return manifest, signature_message(self.signer, bundle)


def _check_spec(spec: PullSpec, source: Source) -> None:
    # The registry's own name rules, checked here too so a bad name fails before a download.
    if spec.name:
        check_name(spec.name)
    for index, alias in enumerate(spec.aliases):
        check_alias(alias, field=f"aliases[{index}]")
    if spec.allow_patterns and not isinstance(source, HFSource):
        raise InvalidArgument("applies to hf:// sources only", field="allow_patterns")
    if len(spec.allow_patterns) > _MAX_PATTERNS:
        raise InvalidArgument(f"at most {_MAX_PATTERNS} patterns", field="allow_patterns")
    for index, pattern in enumerate(spec.allow_patterns):
        if not pattern or len(pattern) > 256 or not pattern.isascii() or not pattern.isprintable():
            raise InvalidArgument("must be 1-256 printable ASCII characters", field=f"allow_patterns[{index}]")
