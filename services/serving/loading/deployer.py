"""Deploy: a model reference -> a READY session.

parse the reference -> claim the session id -> batching and rule pack checked (fail fast, before any
fetch) -> resolve and verify the model -> build the backend for the interface -> choose and build the
executor -> SessionManager.deploy (which records the lineage event before the session serves).
Whatever fails after the executor exists closes it again, so a failed deploy leaves nothing loaded.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from services.core.errors import AlreadyExists, InvalidArgument, NotFound
from services.core.settings import MLSettings
from services.serving.engine.config import BatchingConfig
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.backends.factory import (
    compiled_backend, imported_backend, onnx_backend, segmenter_backend, torch_backend, transformers_backend,
)
from services.serving.interfaces.backends.imported.signature import IMPORTED_FRAMEWORKS
from services.serving.loading.metadata import default_interface
from services.serving.loading.placement import ExecutorPlacement
from services.serving.loading.refs import CHANGEPOINT, parse_model_ref
from services.serving.loading.resolver import TRANSFORMERS, ModelResolver, ResolvedModel
from services.serving.rules.pack import DEFAULT_PACK
from services.serving.sessions.manager import SESSION_ID, SessionManager
from services.serving.sessions.session import Session
from services.serving.sessions.snapshot import SessionState


@dataclass(frozen=True)
class BatchingRequest:
    """The proto's BatchingConfig as asked: 0 means the default; iteration_level None means on."""

    max_batch_size: int = 0
    max_queue_delay_us: int = 0
    max_queue_size: int = 0
    iteration_level: bool | None = None


@dataclass(frozen=True)
class DeploySpec:
    model: str
    interface: str | None = None          # None: the model's own (metadata.interface, or its architecture's)
    batching: BatchingRequest = field(default_factory=BatchingRequest)
    rule_pack: str = ""                   # empty: ood_default
    executor: str = "auto"                # "auto", "triton" or "in_process"
    session_id: str = ""                  # empty: generated


def build_backend(model: ResolvedModel, interface: str, *, onnx_threads: int | None = None) -> ModelBackend:
    if model.ref.value == CHANGEPOINT:
        if interface != "segmenter":
            raise InvalidArgument(f"{CHANGEPOINT} serves the segmenter interface only, not {interface}",
                                  field="interface")
        return segmenter_backend(artifact_id=CHANGEPOINT)
    if model.framework in IMPORTED_FRAMEWORKS:
        return imported_backend(interface, artifact_id=model.artifact_id, metadata=model.metadata,
                                folder=model.folder, framework=model.framework, expected=model.files,
                                threads=onnx_threads)
    if model.framework == TRANSFORMERS:
        return transformers_backend(interface, artifact_id=model.artifact_id, metadata=model.metadata,
                                    folder=model.folder, state_dict=model.state_dict)
    if model.onnx_path is not None:
        return onnx_backend(interface, artifact_id=model.artifact_id, metadata=model.metadata,
                            model_path=model.onnx_path, threads=onnx_threads)
    if model.compiled_path is not None:
        return compiled_backend(interface, artifact_id=model.artifact_id, metadata=model.metadata,
                                model_path=model.compiled_path, max_batch_size=model.compiled_max_batch_size)
    return torch_backend(interface, artifact_id=model.artifact_id, metadata=model.metadata,
                         state_dict=model.state_dict or {})


class Deployer:
    def __init__(self, manager: SessionManager, resolver: ModelResolver, placement: ExecutorPlacement,
                 settings: MLSettings) -> None:
        self.manager = manager
        self.resolver = resolver
        self.placement = placement
        self.settings = settings
        self._claimed: set[str] = set()  # ids being deployed now: a second deploy of one id is refused at once

    async def deploy(self, spec: DeploySpec, *, actor: str) -> Session:
        ref = parse_model_ref(spec.model)
        session_id = spec.session_id or f"s-{uuid.uuid4().hex[:12]}"
        self._claim(session_id)
        try:
            batching = self._batching(spec.batching)
            pack = spec.rule_pack or DEFAULT_PACK
            self._check_pack(pack)
            model = await self.resolver.resolve(ref)
            interface = spec.interface or ("segmenter" if ref.kind == "builtin"
                                           else default_interface(model.metadata, model.framework))
            backend = await asyncio.to_thread(build_backend, model, interface)
            kind = self.placement.choose(spec.executor, backend)
            executor = await self.placement.build(kind, backend, model, session_id, batching)
            try:
                return await self.manager.deploy(backend, interface, batching, pack, session_id, model=ref.text,
                                                 executor=executor, executor_kind=kind, actor=actor)
            except BaseException:
                await executor.close()  # idempotent: the manager may have closed it already
                raise
        finally:
            self._claimed.discard(session_id)

    def _claim(self, session_id: str) -> None:
        if not SESSION_ID.match(session_id):
            raise InvalidArgument("1-128 letters, digits, '_', '.', '-'", field="session_id")
        if session_id in self._claimed:
            raise AlreadyExists(f"session {session_id} is being deployed", field="session_id")
        try:
            existing = self.manager.get(session_id)
        except NotFound:
            existing = None
        if existing is not None and existing.state is not SessionState.UNDEPLOYED:
            raise AlreadyExists(f"session {session_id} exists", field="session_id")
        self._claimed.add(session_id)

    def _batching(self, asked: BatchingRequest) -> BatchingConfig:
        return BatchingConfig.resolve(
            self.settings, max_batch_size=asked.max_batch_size, max_queue_delay_us=asked.max_queue_delay_us,
            max_queue_size=asked.max_queue_size,
            iteration_level=True if asked.iteration_level is None else asked.iteration_level,
        )

    def _check_pack(self, pack: str) -> None:
        """An unknown pack is a bad argument of this Deploy (the loader says NotFound for its own callers)."""
        try:
            self.manager.rule_packs.load(pack)
        except NotFound as exc:
            raise InvalidArgument(exc.message, field="rule_pack") from None
