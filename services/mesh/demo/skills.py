"""The demo's last act: serve the six models, then run both seed skills once and print what they said.

Sessions are deployed through the same find-or-deploy policy the registry's skill runtime uses
(services.core.clients.serving), so the runs reuse them rather than deploying their own; they stay up
for whoever calls next (`data.ml.predict`, `mlmesh skills run`). They run in-process: a Triton model load
takes 10-15 s on a small machine, and the demo must stay quick; Deploy on Triton is one call away. The
runs go through the registry's RunSkill like any caller's, and land in the run ledger.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import torch
from google.protobuf import json_format
from rich.console import Console

from mlmesh.v1 import common_pb2, operations_pb2, operations_pb2_grpc, registry_pb2, registry_pb2_grpc
from mlmesh.v1 import serving_pb2
from services.core.auth.policy import ALL_SCOPES
from services.core.clients.serving import ServingClient
from services.core.errors import error_for_status
from services.mesh import output as out
from services.mesh.client import CALL_TIMEOUT_S, MeshClient
from services.mesh.demo import data
from services.mesh.health import SERVING, check_health

SERVING_SERVICE = "serving"
TERMINAL = {operations_pb2.OPERATION_STATE_SUCCEEDED, operations_pb2.OPERATION_STATE_FAILED,
            operations_pb2.OPERATION_STATE_CANCELLED}
INPUTS_SEED = 7
EXECUTOR = "in_process"


@dataclass(frozen=True)
class DemoRun:
    ref: str
    inputs: dict
    run: registry_pb2.SkillRun


def serving_is_up(client: MeshClient) -> bool:
    """Only a mesh whose topology has a healthy serving can run skills (a registry-only mesh skips them)."""
    endpoint = client.topology.services.get(SERVING_SERVICE)
    return endpoint is not None and check_health(endpoint, timeout_s=2.0) == SERVING


def demo_inputs() -> dict[str, dict]:
    """Plausible inputs, seeded: one bull-market row for both feature inputs; a price series and headlines."""
    gen = torch.Generator().manual_seed(INPUTS_SEED)
    row = [round(v, 6) for v in data.market(1, gen, regime=0)[0][0].tolist()]
    prices = [round(v, 4) for v in data.price_series(1, 64, gen)[0].tolist()]
    return {"regime_aware_alpha": {"market_features": row, "alpha_features": row},
            "multi_horizon_forecast": {"prices": prices, "headlines": data.headlines(5, gen)[0]}}


async def deploy_sessions(client: MeshClient, artifacts: list[common_pb2.Artifact]) -> list[serving_pb2.ServingSession]:
    serving = ServingClient.connect(client.endpoint(SERVING_SERVICE).address, client.issuer, subject=client.subject,
                                    scopes=ALL_SCOPES)
    try:
        interfaces = [json_format.MessageToDict(a.manifest.metadata)["interface"] for a in artifacts]
        return list(await asyncio.gather(*(serving.find_or_deploy(a.id, interface, executor=EXECUTOR)
                                           for a, interface in zip(artifacts, interfaces))))
    finally:
        await serving.close()


async def run_skill(channel, ref: str, inputs: dict) -> registry_pb2.SkillRun:
    """One RunSkill followed to its end; a run that does not succeed raises its error (the demo is broken)."""
    request = registry_pb2.RunSkillRequest(ref=ref)
    request.inputs.update(inputs)
    operation = await registry_pb2_grpc.RegistryStub(channel).RunSkill(request, timeout=CALL_TIMEOUT_S)
    watch = operations_pb2_grpc.OperationsStub(channel).WatchOperation(
        operations_pb2.WatchOperationRequest(id=operation.id), timeout=CALL_TIMEOUT_S * 4)
    async for operation in watch:
        if operation.state in TERMINAL:
            break
    run = registry_pb2.SkillRun()
    if not operation.result.Unpack(run):
        error = error_for_status(getattr(grpc.StatusCode, operation.error.code, grpc.StatusCode.UNKNOWN),
                                 f"demo skill {ref}: {operation.error.message}")
        error.field = operation.error.field or None
        raise error
    return run


async def run_seed_skills(client: MeshClient, skills: list[registry_pb2.PublishSkillResponse]) -> list[DemoRun]:
    inputs = demo_inputs()
    async with client.channel("registry") as channel:
        runs = []
        for published in skills:
            version = published.version
            ref = f"{version.name}@{version.version}"
            runs.append(DemoRun(ref, inputs[version.name], await run_skill(channel, ref, inputs[version.name])))
        return runs


def print_runs(console: Console, artifacts: list[common_pb2.Artifact], sessions: list[serving_pb2.ServingSession],
               runs: list[DemoRun]) -> None:
    names = {a.id: a.name for a in artifacts}
    console.print(out.table("demo sessions", ["model", "interface", "session", "executor"], [
        (names.get(s.artifact_id, s.model), _enum(common_pb2.InterfaceKind, s.interface, "INTERFACE_KIND_"), s.id,
         _enum(serving_pb2.ExecutorKind, s.executor, "EXECUTOR_KIND_")) for s in sessions]))
    for item in runs:
        run = item.run
        rows = [(name, _short(value)) for name, value in out.to_dict(run.outputs).items()]
        title = f"{run.skill_name}: run {run.id[:8]}… in {run.duration_ms:.0f} ms"
        console.print(out.table(title, ["output", "value"], rows))


def _enum(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower()


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        shown = ", ".join(f"{v:.2f}" for v in value[:5])
        return f"[{shown}{', …' if len(value) > 5 else ''}] ({len(value)})"
    return str(value)
