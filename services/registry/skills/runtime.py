"""MLSkillRuntime: runs a hash-locked skill version as a durable operation whose result is the SkillRun.

`start()` checks everything it can before any operation exists, each with a precise status: the version
(NOT_FOUND naming `ref`), the inputs (INVALID_ARGUMENT naming `inputs.<name>`), the models (the version's
lock; with `reresolve_aliases` every reference resolved now, NOT_FOUND when one names nothing any more),
a serving to run on (FAILED_PRECONDITION), and the ledger entry (NOT_FOUND for an unknown experiment or
test). Then the operation runs the dependency levels in order and the steps of one level concurrently;
each step's model is the locked (or re-resolved) artifact hash, served by a session that
ServingClient.find_or_deploy reuses or deploys. Every finished step is one progress update (done/total
steps, stage = the step id). A failing step lets its level finish, then fails the run: the ledger names the
step (failed_step, error) and the operation fails with the step's own status, field `steps.<id>`.
Whatever the outcome, the ledger entry is finished and a "run_skill" lineage event links the skill
version and the artifacts its steps used to `run:<id>`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from google.protobuf.message import Message
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.canonical import find_non_finite
from services.core.clients.serving import ServingClient
from services.core.db.schema import ml_skill_runs
from services.core.errors import Cancelled, FailedPrecondition, MLMeshError, NotFound
from services.core.lineage import LineageBus, LineageEvent, artifact_entity, skill_entity
from services.core.observability.tracing import mark_failed, maybe_span, recording_tracer
from services.core.operations.runner import OperationRunner, ProgressReporter
from services.core.operations.store import STATE_ENUM, Operation
from services.registry.artifacts import ArtifactCatalog
from services.registry.ledger import RunLedger
from services.registry.records import SkillRunRecord, SkillVersionRecord
from services.registry.skills.catalog import SkillCatalog
from services.registry.skills.run_inputs import check_inputs
from services.registry.skills.serving_link import ServingLink
from services.registry.skills.spec import MLSkillSpec, SkillStep, spec_from_data
from services.registry.skills.steps import RunValues, call_interface

KIND = "skill_run"
CANCELLED = STATE_ENUM["CANCELLED"]
log = logging.getLogger("mlmesh.registry.skills")


def run_entity(run_id: str) -> str:
    return f"run:{run_id}"


@dataclass(frozen=True)
class _Plan:
    """Everything a run needs, settled before its operation starts."""

    run: SkillRunRecord
    version: SkillVersionRecord
    spec: MLSkillSpec
    inputs: dict[str, Any]
    resolved: dict[str, str]   # model reference as written -> the artifact hash this run uses
    client: ServingClient
    actor: str
    origin: float              # monotonic clock at the run's start; steps' started_ms count from here


@dataclass
class _State:
    values: RunValues
    total: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    done: int = 0


class _StepFailed(Exception):
    def __init__(self, step_id: str, error: BaseException) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.error = error


class MLSkillRuntime:
    def __init__(self, *, skills: SkillCatalog, artifacts: ArtifactCatalog, ledger: RunLedger,
                 runner: OperationRunner, serving: ServingLink, bus: LineageBus,
                 as_result: Callable[[SkillRunRecord], Message], tracer: Tracer | None = None) -> None:
        self.serving = serving
        self._tracer = tracer or recording_tracer("mlmesh.registry.skills")   # None: spans go nowhere
        self._skills = skills
        self._artifacts = artifacts
        self._ledger = ledger
        self._runner = runner
        self._bus = bus
        self._as_result = as_result  # the SkillRun proto: the operation's result (converters own protos)
        self._settling: set[asyncio.Task[None]] = set()

    async def start(self, ref: str, inputs: Mapping[str, Any], *, actor: str, experiment_id: str = "",
                    test_id: str = "", reresolve_aliases: bool = False) -> Operation:
        version = await self._skills.get(ref)
        spec = spec_from_data(version.spec)
        checked = check_inputs(spec, inputs)
        resolved = await self._resolve(version, reresolve_aliases)
        client = self.serving.client()
        run = await self._ledger.start_run(
            skill_name=version.name, skill_version=version.version, inputs=checked, resolved=resolved, actor=actor,
            reresolved_aliases=reresolve_aliases, experiment_id=experiment_id, test_id=test_id)
        plan = _Plan(run, version, spec, checked, resolved, client, actor, time.monotonic())
        request = {"ref": ref, "skill": f"{version.name}@{version.version}", "run_id": run.id, "inputs": checked,
                   "experiment_id": experiment_id, "test_id": test_id, "reresolve_aliases": reresolve_aliases}
        try:
            operation = await self._runner.start(KIND, request, partial(self._execute, plan), created_by=actor)
        except BaseException:
            await self._ledger.finish_run(run.id, status="FAILED", outputs={}, steps=[], error="the run never started")
            raise
        settle = asyncio.create_task(self._settle(operation.id, run.id))
        self._settling.add(settle)
        settle.add_done_callback(self._settling.discard)
        return operation

    async def _settle(self, operation_id: str, run_id: str) -> None:
        """An operation cancelled while PENDING (or stopped by a shutdown before it ran) never runs the work,
        so nothing else would finish its ledger entry: once the runner is done with it, finish it here."""
        try:
            operation = await self._runner.join(operation_id)
            if (await self._ledger.get_run(run_id)).status != "RUNNING":
                return
            cancelled = operation.state == CANCELLED
            await self._ledger.finish_run(run_id, status="CANCELLED" if cancelled else "FAILED", outputs={}, steps=[],
                                          error=operation.error.message or "the run never started")
        except Exception:
            log.exception("skill run %s: could not settle its ledger entry", run_id)

    async def aclose(self) -> None:
        """After the runner's aclose: let every ledger entry settle, then drop the serving link."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=5.0)
        await self.serving.close()

    async def _resolve(self, version: SkillVersionRecord, reresolve: bool) -> dict[str, str]:
        if not reresolve:
            return dict(version.lock)
        resolved = {}
        for ref in version.lock:  # pinned hashes resolve to themselves; aliases to wherever they point now
            try:
                resolved[ref] = await self._artifacts.resolve(ref, field="reresolve_aliases")
            except NotFound as exc:
                raise NotFound(f"{ref} resolves to nothing now ({exc.message})", field="reresolve_aliases") from None
        return resolved

    async def _execute(self, plan: _Plan, reporter: ProgressReporter) -> Message:
        # The operation's task was made inside the RunSkill call, so this span is a child of that call's.
        with maybe_span(self._tracer, "skill.run", {"mlmesh.skill": f"{plan.version.name}@{plan.version.version}",
                                                    "mlmesh.skill_run.id": plan.run.id}):
            return await self._run_levels(plan, reporter)

    async def _run_levels(self, plan: _Plan, reporter: ProgressReporter) -> Message:
        state = _State(RunValues(dict(plan.inputs)), total=len(plan.spec.steps))
        try:
            for level in plan.spec.dependency_levels():
                await reporter.check_cancel()
                records = await asyncio.gather(*(self._step(plan, plan.spec.step(s), state, reporter) for s in level))
                state.steps.extend(records)
                failed = next((r["step_id"] for r in records if r["step_id"] in state.errors), None)
                if failed is not None:
                    raise _StepFailed(failed, state.errors[failed])
            outputs = {name: state.values.value(out.binding) for name, out in plan.spec.outputs.items()}
            record = await self._ledger.finish_run(plan.run.id, status="SUCCEEDED", outputs=outputs,
                                                   steps=state.steps)
            await self._emit(plan, state, "SUCCEEDED", reporter.operation_id)
            return self._as_result(record)
        except _StepFailed as failed:
            error = failed.error
            text = str(error) if isinstance(error, MLMeshError) else "internal error"
            message = f"step {failed.step_id!r} failed: {text} (run {plan.run.id})"
            await self._finish(plan, state, reporter, "FAILED", text, failed.step_id)
            if isinstance(error, MLMeshError):
                raise type(error)(message, field=f"steps.{failed.step_id}") from None
            raise error
        except (asyncio.CancelledError, Cancelled):
            if reporter.cancelled:
                await asyncio.shield(self._finish(plan, state, reporter, "CANCELLED", "cancelled by request"))
            else:  # the registry is shutting down
                await asyncio.shield(self._finish(plan, state, reporter, "FAILED", "interrupted by a shutdown"))
            raise
        except Exception:
            await asyncio.shield(self._finish(plan, state, reporter, "FAILED", "internal error"))
            raise

    async def _step(self, plan: _Plan, step: SkillStep, state: _State, reporter: ProgressReporter) -> dict[str, Any]:
        with maybe_span(self._tracer, "skill.step", {"mlmesh.skill.step": step.id,
                                                     "mlmesh.skill.interface": step.interface}) as span:
            record = await self._run_step(plan, step, state, reporter)
            if record["error"]:
                mark_failed(span, "the step failed")
            return record

    async def _run_step(self, plan: _Plan, step: SkillStep, state: _State, reporter: ProgressReporter
                        ) -> dict[str, Any]:
        started = time.monotonic()
        record = {"step_id": step.id, "interface": step.interface, "model": "", "resolved_model": "", "output": {},
                  "started_ms": (started - plan.origin) * 1000, "duration_ms": 0.0, "error": ""}
        try:
            record["model"] = ref = state.values.model_ref(step)
            record["resolved_model"] = artifact_id = plan.resolved[ref]  # the lock holds every reference
            session = await plan.client.find_or_deploy(artifact_id, step.interface)
            output = await call_interface(plan.client, session.id, step.interface, state.values.arguments(step))
            if bad := find_non_finite(output, "output"):
                raise FailedPrecondition("the model answered a number that is not finite", field=bad)
            record["output"] = state.values.outputs[step.id] = output
        except MLMeshError as exc:
            record["error"], state.errors[step.id] = str(exc), exc
        except Exception as exc:  # a bug: the run fails INTERNAL, the log has the details
            log.exception("skill run %s: step %s", plan.run.id, step.id)
            record["error"], state.errors[step.id] = "internal error", exc
        record["duration_ms"] = (time.monotonic() - started) * 1000
        state.done += 1
        note = f"failed: {record['error']}" if record["error"] else f"done in {record['duration_ms']:.0f} ms"
        await reporter.progress(state.done, state.total, "steps", step.id, note[:200])
        return record

    async def _finish(self, plan: _Plan, state: _State, reporter: ProgressReporter, status: str, error: str,
                      failed_step: str = "") -> None:
        """The ledger entry finished and the lineage event emitted; a failure here must not hide the first."""
        try:
            await self._ledger.finish_run(plan.run.id, status=status, outputs={}, steps=state.steps, error=error,
                                          failed_step=failed_step)
            await self._emit(plan, state, status, reporter.operation_id)
        except Exception:
            log.exception("skill run %s: could not record its end (%s)", plan.run.id, status)

    async def _emit(self, plan: _Plan, state: _State, status: str, operation_id: str) -> None:
        models = {r["step_id"]: r["resolved_model"] for r in state.steps if r["resolved_model"]}
        await self._bus.emit(LineageEvent(
            operation="run_skill", actor=plan.actor,
            inputs=[skill_entity(plan.version.name, plan.version.version),
                    *(artifact_entity(h) for h in dict.fromkeys(models.values()))],
            outputs=[run_entity(plan.run.id)],
            parameters={"status": status, "models": models, "reresolved_aliases": plan.run.reresolved_aliases,
                        "experiment_id": plan.run.experiment_id or "", "test_id": plan.run.test_id or ""},
            service="registry", operation_id=operation_id))


async def fail_interrupted_runs(engine: AsyncEngine) -> int:
    """Runs left RUNNING by a registry that stopped mid-run: FAILED, as their operations are on restart."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        result = await conn.execute(
            ml_skill_runs.update().where(ml_skill_runs.c.status == "RUNNING")
            .values(status="FAILED", error="interrupted by a restart", finished_at=now))
    return result.rowcount or 0
