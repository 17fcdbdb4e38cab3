"""`MLOpsHandler`: the contract every artifact lifecycle operation keeps.

`policy_check(scope)` runs before anything is touched, and a `LineageEvent` is emitted on the injected
`LineageBus` only after the operation succeeded. Subclasses write

    async with self.lifecycle("store", self.write_scope) as op:
        ...work...
        op.record(inputs=[...], outputs=[...], parameters={...})

and get both halves without repeating them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from services.core.auth.policy import policy_check
from services.core.auth.principal import Principal
from services.core.errors import InvalidArgument
from services.core.lineage import LineageBus, LineageEvent

# Entity kind for a raw content-addressed blob (artifacts are `artifact:sha256:<hex>`).
OBJECT_KIND = "object"


def object_entity(sha256_hex: str) -> str:
    return f"{OBJECT_KIND}:sha256:{sha256_hex}"


@dataclass
class LifecycleOperation:
    """What one running operation will report; filled in by the handler before it returns."""

    name: str
    principal: Principal
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    event: LineageEvent | None = None

    @property
    def actor(self) -> str:
        return self.principal.subject

    def record(
        self,
        *,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.inputs.extend(inputs)
        self.outputs.extend(outputs)
        if parameters:
            self.parameters.update(parameters)


class MLOpsHandler:
    """Base of the artifact handlers. `service` names the emitting service in every event."""

    def __init__(self, bus: LineageBus, *, service: str = "") -> None:
        self._bus = bus
        self.service = service

    @property
    def bus(self) -> LineageBus:
        return self._bus

    def authorize(self, scope: str) -> Principal:
        """The caller if it holds `scope` (reads that emit no event use this alone)."""
        return policy_check(scope)

    @asynccontextmanager
    async def lifecycle(self, operation: str, scope: str) -> AsyncIterator[LifecycleOperation]:
        principal = policy_check(scope)  # first: a refused caller causes no work at all
        op = LifecycleOperation(name=operation, principal=principal)
        yield op
        # Reached only when the body raised nothing: failures are not lineage.
        if not op.inputs and not op.outputs:
            raise InvalidArgument(f"{operation} recorded no inputs or outputs", field="event.outputs")
        parameters = dict(op.parameters)
        if principal.on_behalf_of:
            parameters.setdefault("on_behalf_of", principal.on_behalf_of)
        op.event = await self._bus.emit(
            LineageEvent(
                operation=operation,
                actor=principal.subject,
                inputs=tuple(dict.fromkeys(op.inputs)),
                outputs=tuple(dict.fromkeys(op.outputs)),
                parameters=parameters,
                service=self.service,
            )
        )
