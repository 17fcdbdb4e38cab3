"""LineageStore: records LineageBus events and answers the lineage graph around an entity."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.canonical import find_non_finite
from services.core.db.schema import as_utc, lineage_edges, lineage_events
from services.core.errors import InvalidArgument
from services.core.lineage import TYPED_REF, LineageEvent, entity_kind, normalize_entity

DEFAULT_DEPTH = 5
MAX_DEPTH = 50
UPSTREAM, DOWNSTREAM, BOTH = "upstream", "downstream", "both"


@dataclass
class LineageGraphData:
    root: str
    nodes: dict[str, str] = field(default_factory=dict)            # entity -> kind
    edges: set[tuple[str, str, str, str]] = field(default_factory=set)  # (source, target, event id, operation)
    events: dict[str, LineageEvent] = field(default_factory=dict)


class LineageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, event: LineageEvent) -> LineageEvent:
        """Stores an event once; a repeated id is ignored (sinks may retry)."""
        bad = find_non_finite(dict(event.parameters), "event.parameters")
        if bad:
            raise InvalidArgument("must be a finite number", field=bad)
        async with self._engine.begin() as conn:
            seen = await conn.execute(sa.select(lineage_events.c.id).where(lineage_events.c.id == event.id))
            if seen.first() is not None:
                return event
            await conn.execute(
                lineage_events.insert().values(
                    id=event.id, operation=event.operation, actor=event.actor, service=event.service,
                    operation_id=event.operation_id or None, parameters=dict(event.parameters), time=event.time,
                )
            )
            edges = [{"event_id": event.id, "entity": e, "role": "input"} for e in dict.fromkeys(event.inputs)]
            edges += [{"event_id": event.id, "entity": e, "role": "output"} for e in dict.fromkeys(event.outputs)]
            await conn.execute(lineage_edges.insert(), edges)
        return event

    async def graph(self, entity: str, *, direction: str = BOTH, depth: int = 0) -> LineageGraphData:
        """Breadth-first walk from `entity`, up to `depth` events away, in one or both directions."""
        if not entity:
            raise InvalidArgument("is required", field="entity")
        if depth < 0:
            raise InvalidArgument("must not be negative", field="depth")
        depth = min(depth or DEFAULT_DEPTH, MAX_DEPTH)
        root = normalize_entity(entity)
        if not TYPED_REF.match(root):
            raise InvalidArgument(
                "must be a typed ref such as 'artifact:sha256:<hex>', 'compiled:sha256:<hex>' or 'skill:<name>@<version>'",
                field="entity",
            )
        graph = LineageGraphData(root=root, nodes={root: entity_kind(root)})
        walks = [UPSTREAM, DOWNSTREAM] if direction == BOTH else [direction]
        async with self._engine.connect() as conn:
            for walk in walks:
                frontier, seen = {root}, {root}
                for _ in range(depth):
                    if not frontier:
                        break
                    frontier = await self._step(conn, graph, frontier, walk) - seen
                    seen |= frontier
        return graph

    async def _step(self, conn, graph: LineageGraphData, frontier: set[str], walk: str) -> set[str]:
        # Upstream: events that output a frontier entity; their inputs are the next frontier.
        near_role, far_role = ("output", "input") if walk == UPSTREAM else ("input", "output")
        event_ids = sa.select(lineage_edges.c.event_id).where(
            lineage_edges.c.entity.in_(frontier), lineage_edges.c.role == near_role
        )
        rows = (
            await conn.execute(
                sa.select(lineage_edges, lineage_events)
                .join(lineage_events, lineage_events.c.id == lineage_edges.c.event_id)
                .where(lineage_edges.c.event_id.in_(event_ids))
            )
        ).all()
        by_event: dict[str, dict[str, list[str]]] = {}
        first_row = {}
        for row in rows:
            by_event.setdefault(row.event_id, {"input": [], "output": []})[row.role].append(row.entity)
            first_row.setdefault(row.event_id, row)
        following: set[str] = set()
        for event_id, roles in by_event.items():
            event = graph.events.setdefault(event_id, _event(first_row[event_id], roles))
            for source in roles["input"]:
                for target in roles["output"]:
                    graph.edges.add((source, target, event_id, event.operation))
            for node in roles["input"] + roles["output"]:
                graph.nodes.setdefault(node, entity_kind(node))
            following.update(roles[far_role])
        return following


def _event(row, roles: dict[str, list[str]]) -> LineageEvent:
    return LineageEvent(
        id=row.event_id, operation=row.operation, actor=row.actor or "", inputs=tuple(roles["input"]),
        outputs=tuple(roles["output"]), parameters=dict(row.parameters or {}), service=row.service or "",
        operation_id=row.operation_id or "", time=as_utc(row.time),
    )
