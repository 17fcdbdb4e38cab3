"""Sessions as KServe v2 models: found by name (the session id) and version ("1"), described by their
tensor signature, and inferred on: a request's tensors become the session's typed calls, which go
through its rules and scheduler like any request; the results become output tensors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from services.core.errors import InvalidArgument, NotFound
from services.serving.interfaces.backends.base import ModelBackend
from services.serving.interfaces.results import CallOptions
from services.serving.kserve.describe import VERSION
from services.serving.kserve.signatures import Signature, signature_for
from services.serving.sessions.manager import SessionManager
from services.serving.sessions.session import Session


async def _all(coroutines: list) -> list:
    """Every result, or the first failure with the others cancelled (no half answers kept running)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class TensorModels:
    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self._signatures: dict[str, tuple[ModelBackend, Signature]] = {}  # session id -> (backend, signature)

    def get(self, name: str, version: str = "", *, field: str = "name") -> Session:
        """The session `name` names; `field` is the request's name field, for the error."""
        if version not in ("", VERSION):
            raise NotFound(f"model {name!r} has no version {version!r}; it has {VERSION!r}",
                           field=field.replace("name", "version"))
        try:
            return self.manager.get(name)
        except NotFound:
            raise NotFound(f"no model {name!r} (a model is a serving session)", field=field) from None

    def signature(self, session: Session) -> Signature:
        cached = self._signatures.get(session.id)
        if cached is None or cached[0] is not session.backend:  # a session id may be deployed again
            cached = self._signatures[session.id] = (session.backend, signature_for(session.backend))
        return cached[1]

    async def infer(self, session: Session, tensors: dict[str, np.ndarray], options: CallOptions,
                    wanted: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """The output tensors (all, or the `wanted` ones in that order) for the input `tensors`."""
        signature = self.signature(session)
        calls = signature.calls(tensors)
        if len(calls) == 1:  # the usual case: no task per request
            answers = [await session.infer(calls[0], options)]
        else:
            answers = await _all([session.infer(call, options) for call in calls])
        outputs = signature.encode([a.result for a in answers])
        if not wanted:
            return outputs
        for index, name in enumerate(wanted):
            if name not in outputs:
                raise InvalidArgument(f"unknown output {name!r}; known: {sorted(outputs)}", field=f"outputs[{index}]")
        return {name: outputs[name] for name in wanted}
