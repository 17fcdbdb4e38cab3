"""Read the system of record: data.ml.list_models, data.ml.list_skills, data.ml.lineage -> Registry RPCs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from mlmesh.v1 import registry_pb2, registry_pb2_grpc
from services.core.auth import policy
from services.mcp_gateway import convert
from services.mcp_gateway.catalog import PREFIX, READ_ONLY, Args, Result, ToolCall, ToolSpec

PageSize = Annotated[int, Field(0, ge=0, le=500, description="0 means the server default.")]
PageToken = Annotated[str, Field("", max_length=1000, description="next_page_token of the previous page.")]


class Model(Result):
    id: str = Field(description="sha256:<hex> of the manifest; use it, or name@alias, as a model reference.")
    name: str
    aliases: list[str]
    framework: str
    format: str
    files: int
    total_size: int = Field(description="Bytes.")
    labels: dict[str, str]
    source_uri: str
    signed: bool
    created_by: str
    created_at: str


class ListModelsArgs(Args):
    name: Annotated[str, Field(max_length=200, description="Only artifacts registered under this name.")] = ""
    framework: Annotated[str, Field(max_length=100, description="e.g. torch, onnx.")] = ""
    labels: Annotated[dict[str, str], Field(description="Every label must match.")] = {}
    page_size: PageSize = 0
    page_token: PageToken = ""


class ListModelsResult(Result):
    models: list[Model]
    next_page_token: str


async def list_models(call: ToolCall, a: ListModelsArgs) -> dict:
    stub = call.stub(registry_pb2_grpc.RegistryStub)
    reply = await call.unary(stub.ListArtifacts, registry_pb2.ListArtifactsRequest(
        name=a.name, framework=a.framework, labels=a.labels, page_size=a.page_size, page_token=a.page_token))
    return {"models": [convert.artifact(x) for x in reply.artifacts], "next_page_token": reply.next_page_token}


class ListSkillsArgs(Args):
    page_size: PageSize = 0
    page_token: PageToken = ""


class Skill(Result):
    name: str
    description: str
    latest_version: str = Field(description="SHA-256 of the latest version's canonical spec.")
    version_count: int
    updated_at: str


class ListSkillsResult(Result):
    skills: list[Skill]
    next_page_token: str


async def list_skills(call: ToolCall, a: ListSkillsArgs) -> dict:
    stub = call.stub(registry_pb2_grpc.RegistryStub)
    reply = await call.unary(stub.ListSkills, registry_pb2.ListSkillsRequest(
        page_size=a.page_size, page_token=a.page_token))
    return {"skills": [{"name": s.name, "description": s.description, "latest_version": s.latest_version,
                        "version_count": s.version_count, "updated_at": convert.when(s, "updated_at")}
                       for s in reply.skills], "next_page_token": reply.next_page_token}


_DIRECTIONS = {"both": registry_pb2.LINEAGE_DIRECTION_BOTH, "upstream": registry_pb2.LINEAGE_DIRECTION_UPSTREAM,
               "downstream": registry_pb2.LINEAGE_DIRECTION_DOWNSTREAM}


class LineageArgs(Args):
    entity: Annotated[str, Field(min_length=1, max_length=500, description=(
        "A typed ref (artifact:sha256:<hex>, compiled:sha256:<hex>, skill:<name>@<version>, session:<id>, "
        "run:<id>) or a bare sha256:<hex> artifact id."))]
    direction: Literal["both", "upstream", "downstream"] = "both"
    depth: Annotated[int, Field(ge=0, le=50, description="0 means the server default (5).")] = 0


class Node(Result):
    entity: str
    kind: str


class Edge(Result):
    source: str
    target: str
    operation: str
    event_id: str


class Event(Result):
    id: str
    operation: str
    actor: str
    service: str
    inputs: list[str]
    outputs: list[str]
    parameters: dict[str, Any]
    operation_id: str
    time: str


class LineageResult(Result):
    root: str
    nodes: list[Node]
    edges: list[Edge]
    events: list[Event]


async def lineage(call: ToolCall, a: LineageArgs) -> dict:
    stub = call.stub(registry_pb2_grpc.RegistryStub)
    g = await call.unary(stub.GetLineage, registry_pb2.GetLineageRequest(
        entity=a.entity, direction=_DIRECTIONS[a.direction], depth=a.depth))
    return {
        "root": g.root, "nodes": [{"entity": n.entity, "kind": n.kind} for n in g.nodes],
        "edges": [{"source": e.source, "target": e.target, "operation": e.operation, "event_id": e.event_id}
                  for e in g.edges],
        "events": [{"id": e.id, "operation": e.operation, "actor": e.actor, "service": e.service,
                    "inputs": list(e.inputs), "outputs": list(e.outputs), "parameters": convert.struct(e.parameters),
                    "operation_id": e.operation_id, "time": convert.when(e, "time")} for e in g.events],
    }


def _read(verb: str, title: str, description: str, args: type[Args], result: type[Result], run) -> ToolSpec:
    return ToolSpec(name=PREFIX + verb, title=title, description=description, scope=policy.REGISTRY_READ,
                    service="registry", backend_scopes=(policy.REGISTRY_READ,), args=args, result=result,
                    annotations=READ_ONLY, run=run)


TOOLS = [
    _read("list_models", "List models", "List registered model artifacts (newest first), filtered by name, "
          "framework or labels.", ListModelsArgs, ListModelsResult, list_models),
    _read("list_skills", "List skills", "List published skills with their latest hash-locked version.",
          ListSkillsArgs, ListSkillsResult, list_skills),
    _read("lineage", "Lineage", "The lineage graph around an entity: what it was made from and what was made "
          "from it, with the events that connect them.", LineageArgs, LineageResult, lineage),
]
