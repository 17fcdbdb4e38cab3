"""Serving sessions and the kill switch: data.ml.serve / list_serving / halt_serving / halt_all."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mlmesh.v1 import common_pb2, serving_pb2, serving_pb2_grpc
from services.core.auth import policy as p
from services.mcp_gateway import convert
from services.mcp_gateway.catalog import PREFIX, READ_ONLY, Args, Result, ToolCall, ToolSpec, writes

Interface = Literal["predictor", "forecaster", "classifier", "segmenter", "analyzer"]
State = Literal["deploying", "ready", "halted", "undeployed", "failed"]
_INTERFACES = {name: common_pb2.InterfaceKind.Value(f"INTERFACE_KIND_{name.upper()}") for name in Interface.__args__}
_EXECUTORS = {"auto": serving_pb2.EXECUTOR_KIND_UNSPECIFIED, "triton": serving_pb2.EXECUTOR_KIND_TRITON,
              "in_process": serving_pb2.EXECUTOR_KIND_IN_PROCESS}
_BATCHING = {"batching": ""}  # the BatchingConfig fields are spread out as arguments of their own


class Stats(Result):
    queue_depth: int
    running: int
    requests_total: int
    requests_failed: int
    requests_refused: int
    throughput_rps: float
    latency_p50_ms: float
    latency_p99_ms: float
    batch_size_mean: float
    breaker_state: str


class Session(Result):
    id: str = Field(description="Pass it as session_id to the interface tools.")
    model: str
    artifact_id: str
    interface: str
    state: str
    executor: str
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    rule_pack: str
    halt_reason: str
    replica: str
    stats: Stats
    created_at: str
    updated_at: str


class ServeArgs(Args):
    model: Annotated[str, Field(min_length=1, max_length=300, description=(
        "sha256:<hex>, name@alias, name, or compiled:sha256:<hex> (from data.ml.compile)."))]
    interface: Annotated[Interface | None, Field(description=(
        "The interface to serve; unset means the one the artifact's metadata declares."))] = None
    max_batch_size: Annotated[int, Field(ge=0, le=65536, description="0 means the serving default.")] = 0
    max_queue_delay_us: Annotated[int, Field(ge=0, le=10_000_000, description="Extra wait to fill a batch.")] = 0
    max_queue_size: Annotated[int, Field(ge=0, le=1_000_000, description="Over this, RESOURCE_EXHAUSTED.")] = 0
    iteration_level: Annotated[bool | None, Field(description=(
        "Forecasters: join/leave the running batch per step; unset means on."))] = None
    rule_pack: Annotated[str, Field(max_length=100, description=(
        "A pack under configs/rules/; default ood_default."))] = ""
    executor: Literal["auto", "triton", "in_process"] = "auto"
    session_id: Annotated[str, Field(max_length=200, description="Optional stable id; generated when empty.")] = ""


class SessionResult(Result):
    session: Session


async def serve(call: ToolCall, a: ServeArgs) -> dict:
    batching = serving_pb2.BatchingConfig(max_batch_size=a.max_batch_size, max_queue_delay_us=a.max_queue_delay_us,
                                          max_queue_size=a.max_queue_size)
    if a.iteration_level is not None:
        batching.iteration_level = a.iteration_level
    reply = await call.unary(call.stub(serving_pb2_grpc.ServingStub).Deploy, serving_pb2.DeployRequest(
        model=a.model, interface=_INTERFACES[a.interface] if a.interface else 0, batching=batching,
        rule_pack=a.rule_pack, executor=_EXECUTORS[a.executor], session_id=a.session_id))
    return {"session": convert.session(reply)}


class ListServingArgs(Args):
    state: Annotated[State | None, Field(description="Only sessions in this state.")] = None


class ListServingResult(Result):
    sessions: list[Session]


async def list_serving(call: ToolCall, a: ListServingArgs) -> dict:
    state = serving_pb2.SessionState.Value(f"SESSION_STATE_{a.state.upper()}") if a.state else 0
    reply = await call.unary(call.stub(serving_pb2_grpc.ServingStub).ListSessions,
                             serving_pb2.ListSessionsRequest(state=state))
    return {"sessions": [convert.session(s) for s in reply.sessions]}


# Strict: a destructive choice is made with a JSON boolean, never guessed from a string or a number.
CancelRunning = Annotated[bool, Field(strict=True, description=(
    "false (default): a batch a halted model is running now finishes and its callers get their answers. "
    "true: those callers fail at once with UNAVAILABLE too and the outputs are discarded, so nothing more is "
    "answered: use it in an emergency, when the model's outputs must not reach anyone. Queued calls fail "
    "either way."))]


class HaltArgs(Args):
    session_id: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Annotated[str, Field(max_length=500, description="Recorded with the halt.")] = ""
    cancel_running: CancelRunning = False


async def halt_serving(call: ToolCall, a: HaltArgs) -> dict:
    reply = await call.unary(call.stub(serving_pb2_grpc.ServingStub).HaltSession, serving_pb2.HaltSessionRequest(
        session_id=a.session_id, reason=a.reason, cancel_running=a.cancel_running))
    return {"session": convert.session(reply)}


class HaltAllArgs(Args):
    reason: Annotated[str, Field(min_length=1, max_length=500, description="Why: recorded with every halt.")]
    cancel_running: CancelRunning = False


class HaltResult(Result):
    replica: str
    session_id: str = Field(description="Empty on a replica's own row: reached with no session (halted true) or "
                                        "not reached (halted false, error says why).")
    halted: bool
    error: str = Field(description="Why this replica or session did not confirm the halt.")


class HaltAllResult(Result):
    halted: int
    results: list[HaltResult]


async def halt_all(call: ToolCall, a: HaltAllArgs) -> dict:
    reply = await call.unary(call.stub(serving_pb2_grpc.ServingStub).HaltAll,
                             serving_pb2.HaltAllRequest(reason=a.reason, cancel_running=a.cancel_running))
    return {"halted": reply.halted, "results": [
        {"replica": r.replica, "session_id": r.session_id, "halted": r.halted, "error": r.error}
        for r in reply.results]}


TOOLS = [
    ToolSpec(name=PREFIX + "serve", title="Serve a model", description=(
        "Deploy a model (or a compiled artifact) behind one of the five interfaces; returns the session."),
        scope=p.SERVING_DEPLOY, service="serving", backend_scopes=(p.SERVING_DEPLOY,), args=ServeArgs,
        result=SessionResult, annotations=writes(destructive=False, idempotent=False), run=serve,
        renames=_BATCHING),
    ToolSpec(name=PREFIX + "list_serving", title="List serving sessions", description=(
        "Serving sessions with their state, batching and live figures (queue, latency, breaker)."),
        scope=p.SERVING_READ, service="serving", backend_scopes=(p.SERVING_READ,), args=ListServingArgs,
        result=ListServingResult, annotations=READ_ONLY, run=list_serving),
    ToolSpec(name=PREFIX + "halt_serving", title="Halt a serving session", description=(
        "Kill switch for one session: it refuses requests (UNAVAILABLE) until resumed."),
        scope=p.SERVING_HALT, service="serving", backend_scopes=(p.SERVING_HALT,), args=HaltArgs,
        result=SessionResult, annotations=writes(destructive=True, idempotent=True), run=halt_serving),
    ToolSpec(name=PREFIX + "halt_all", title="Halt all serving", description=(
        "Kill switch for everything: halts every session on every serving replica."),
        scope=p.SERVING_HALT, service="serving", backend_scopes=(p.SERVING_HALT,), args=HaltAllArgs,
        result=HaltAllResult, annotations=writes(destructive=True, idempotent=True), run=halt_all),
]
