"""The LineageBus: every lifecycle operation emits an event here; sinks (the registry's store, or a
gRPC client of the registry in other services) record it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.core.errors import InvalidArgument

# A typed ref: "<kind>:<id>", e.g. artifact:sha256:<hex>, source:hf://org/name@<commit>, session:<id>.
TYPED_REF = re.compile(r"^[a-z][a-z_]{0,31}:\S.*$")


@dataclass(frozen=True)
class LineageEvent:
    """One lifecycle operation: what went in, what came out, who did it and when."""

    operation: str
    actor: str
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    service: str = ""
    operation_id: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if not self.operation:
            raise InvalidArgument("is required", field="event.operation")
        if not self.inputs and not self.outputs:
            raise InvalidArgument("an event needs at least one input or output", field="event.outputs")
        for role, entities in (("inputs", self.inputs), ("outputs", self.outputs)):
            for index, entity in enumerate(entities):
                if len(entity) > 400 or not TYPED_REF.match(entity):
                    raise InvalidArgument(
                        "must be a typed ref '<kind>:<id>' of at most 400 characters", field=f"event.{role}[{index}]"
                    )


LineageSink = Callable[[LineageEvent], Awaitable[None]]


class LineageBus:
    """Fan-out of lineage events to sinks. A sink that fails fails the emit: lineage is not optional."""

    def __init__(self) -> None:
        self._sinks: list[LineageSink] = []

    def subscribe(self, sink: LineageSink) -> None:
        self._sinks.append(sink)

    async def emit(self, event: LineageEvent) -> LineageEvent:
        for sink in self._sinks:
            await sink(event)
        return event


# Typed entity refs, so a graph can mix artifacts, compiled outputs, skills and external sources.
def artifact_entity(artifact_id: str) -> str:
    return f"artifact:{artifact_id}"


def compiled_entity(compiled_id: str) -> str:
    return f"compiled:{compiled_id}"


def skill_entity(name: str, version: str) -> str:
    return f"skill:{name}@{version}"


def source_entity(uri: str) -> str:
    return f"source:{uri}"


def entity_kind(entity: str) -> str:
    return entity.partition(":")[0] if ":" in entity else "unknown"


def normalize_entity(entity: str) -> str:
    """A bare `sha256:<hex>` means the artifact with that id."""
    return artifact_entity(entity) if entity.startswith("sha256:") else entity
