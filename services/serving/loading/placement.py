"""Which executor runs a session's batches, and building it: in-process, or Triton.

Deploy asks for an ExecutorKind; UNSPECIFIED means "auto", which the service's executor mode decides:
`auto` takes Triton when this service has one (started or pointed at) and the model can run there,
else in-process; `triton` takes Triton or refuses; `in_process` never touches Triton. An explicit
TRITON is refused with FAILED_PRECONDITION and the reason when Triton is not available; an explicit
IN_PROCESS is always honoured. The session reports what was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.core.errors import FailedPrecondition
from services.serving.engine.config import BatchingConfig
from services.serving.engine.executor import Executor
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.loading.resolver import ResolvedModel
from services.serving.loading.triton_entry import check_triton, triton_executor
from services.serving.sessions.manager import in_process_executor
from services.serving.triton.repository import ModelRepository

ExecutorMode = Literal["auto", "triton", "in_process"]
IN_PROCESS, TRITON = "in_process", "triton"


@dataclass(frozen=True)
class TritonTarget:
    """A Triton this service may place sessions on: its gRPC address and the repository it reads."""

    url: str
    repository: ModelRepository
    request_timeout_s: float = 30.0
    load_timeout_s: float = 120.0


class ExecutorPlacement:
    def __init__(self, mode: ExecutorMode = "auto", triton: TritonTarget | None = None,
                 unavailable_reason: str = "") -> None:
        self.mode = mode
        self.triton = triton
        self.unavailable_reason = unavailable_reason or "this serving service has no Triton"

    @property
    def default_kind(self) -> str:
        """What an unspecified executor becomes for a model that can run anywhere."""
        return TRITON if self.mode != IN_PROCESS and self.triton is not None else IN_PROCESS

    def choose(self, requested: str, backend: ModelBackend) -> str:
        """"in_process" or "triton" for `requested` ("auto", "triton", "in_process"); refuses what cannot be."""
        if requested == IN_PROCESS:
            return IN_PROCESS
        if requested == "auto" and self.mode == IN_PROCESS:
            return IN_PROCESS
        wanted = requested == TRITON or self.mode == TRITON
        if self.triton is None:
            if wanted:
                raise FailedPrecondition(f"Triton is not available: {self.unavailable_reason}", field="executor")
            return IN_PROCESS
        try:
            check_triton(backend)
        except FailedPrecondition:
            if wanted:
                raise
            return IN_PROCESS  # auto: e.g. the algorithmic segmenter runs in-process
        return TRITON

    async def build(self, kind: str, backend: ModelBackend, model: ResolvedModel, session_id: str,
                    batching: BatchingConfig) -> Executor:
        if kind == IN_PROCESS:
            return in_process_executor(backend, session_id)
        target = self.triton
        if target is None:  # choose() refused this already; kept for callers that skip it
            raise FailedPrecondition(f"Triton is not available: {self.unavailable_reason}", field="executor")
        return await triton_executor(target.url, target.repository, session_id, backend, model, batching,
                                     request_timeout_s=target.request_timeout_s,
                                     load_timeout_s=target.load_timeout_s)
