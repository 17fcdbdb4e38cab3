"""RunSkill end to end: a real registry and a real serving service in-process on 127.0.0.1:0 (one event loop
for the module), the demo's six models trained briefly, saved signed, registered @prod, both seed skills
published. Runs go through the gRPC surface: RunSkill -> WatchOperation -> the SkillRun, the ledger, lineage."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
import torch

from mlmesh.v1 import operations_pb2, operations_pb2_grpc, registry_pb2, registry_pb2_grpc, serving_pb2
from mlmesh.v1 import serving_pb2_grpc
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient
from services.core.clients.serving import ServingClient
from services.core.errors import Unavailable
from services.core.lineage import LineageBus
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.mesh.demo import data, models as demo
from services.registry.server import build_registry
from services.serving.server import ServingSettings, build_serving
from tests.registry.conftest import SKILLS_DIR

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUBJECT = "test-operator"
FAILED, SUCCEEDED = operations_pb2.OPERATION_STATE_FAILED, operations_pb2.OPERATION_STATE_SUCCEEDED


class Authed:
    """A stub whose every call carries `token`."""

    def __init__(self, stub, token: str) -> None:
        self._stub, self._metadata = stub, (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name):
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._metadata, **kw)


@dataclass
class Mesh:
    registry: Authed
    operations: Authed
    serving: Authed
    issuer: TokenIssuer
    serving_address: str
    ids: dict[str, str]          # model name -> artifact id
    locks: dict[str, dict]       # skill name -> lock
    publish: object              # async (trained, name, aliases) -> artifact id
    app: object                  # the RegistryApp, for what only its domain can do


def _train(seed: int = 11) -> list[demo.Trained]:
    quiet = lambda n: None  # noqa: E731
    recipes = [lambda g: demo.regime_classifier(g, 30, quiet),
               *(lambda g, r=r: demo.alpha_model(r, g, 20, quiet) for r in data.REGIMES),
               lambda g: demo.price_forecaster(g, 15, quiet), lambda g: demo.news_sentiment(g, 40, quiet)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the demo trains: tiny models crawl when OpenMP threads spin on 2 cores
    try:
        with torch.random.fork_rng():
            out = []
            for offset, recipe in enumerate(recipes):
                torch.manual_seed(seed + offset)
                out.append(recipe(torch.Generator().manual_seed(seed + offset)))
            return out
    finally:
        torch.set_num_threads(threads)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory):
    root = tmp_path_factory.mktemp("skill-runtime")
    settings = MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mesh.db'}")
    registry = await build_registry(settings, ServerSettings(), AuthSettings())
    registry_address = f"127.0.0.1:{await registry.start('127.0.0.1', 0)}"
    serving = await build_serving(settings, ServerSettings(), AuthSettings(), registry_address=registry_address,
                                  serving=ServingSettings(executor="in_process", start_triton=False))
    serving_address = f"127.0.0.1:{await serving.start('127.0.0.1', 0)}"
    registry.runtime.serving.address = serving_address  # serving's port is known only now
    issuer = TokenIssuer.from_settings(settings, AuthSettings())
    kit = build_artifact_toolkit(settings, LineageBus(), service="test", write_scope=REGISTRY_WRITE,
                                 read_scope=REGISTRY_WRITE)
    client = RegistryClient.connect(registry_address, issuer, subject=SUBJECT, scopes=ALL_SCOPES)

    async def publish(trained: demo.Trained, name: str, aliases=("prod",)) -> str:
        token = set_principal(Principal(SUBJECT, frozenset(ALL_SCOPES), "registry", "t", time.time() + 600))
        try:
            meta = dict(trained.metadata)
            saved = await kit.saver.save(trained.module.state_dict(), architecture=meta.pop("architecture"),
                                         training_stats=meta.pop("training_stats", None),
                                         feature_names=meta.pop("feature_names", None), metadata=meta)
            artifact = await client.register_artifact(saved.manifest, name=name, aliases=aliases,
                                                      signature=signature_message(kit.signer, saved.signature))
        finally:
            reset_principal(token)
        return artifact.id

    ids = {t.name: await publish(t, t.name) for t in _train()}
    locks = {}
    for name in ("regime_aware_alpha", "multi_horizon_forecast"):
        published = await client.publish_skill((SKILLS_DIR / f"{name}.yaml").read_text())
        locks[name] = dict(published.version.lock)
    channels = [grpc.aio.insecure_channel(a) for a in (registry_address, serving_address)]
    yield Mesh(Authed(registry_pb2_grpc.RegistryStub(channels[0]), issuer.mint(SUBJECT, "registry", ALL_SCOPES)),
               Authed(operations_pb2_grpc.OperationsStub(channels[0]), issuer.mint(SUBJECT, "registry", ALL_SCOPES)),
               Authed(serving_pb2_grpc.ServingStub(channels[1]), issuer.mint(SUBJECT, "serving", ALL_SCOPES)),
               issuer, serving_address, ids, locks, publish, registry)
    for channel in channels:
        await channel.close()
    await client.close()
    await serving.stop(0)
    await registry.stop(0)


def market(regime: int = 0, seed: int = 1) -> list[float]:
    return data.market(1, torch.Generator().manual_seed(seed), regime=regime)[0][0].tolist()


def forecast_inputs(seed: int = 2) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"prices": data.price_series(1, 64, gen)[0].tolist(), "headlines": data.headlines(4, gen)[0]}


async def run_skill(mesh: Mesh, ref: str, inputs: dict, **fields):
    """(final operation, every update watched, the SkillRun when it succeeded)."""
    request = registry_pb2.RunSkillRequest(ref=ref, **fields)
    request.inputs.update(inputs)
    started = await mesh.registry.RunSkill(request)
    assert started.kind == "skill_run" and started.request["run_id"]
    updates = [u async for u in mesh.operations.WatchOperation(operations_pb2.WatchOperationRequest(id=started.id))]
    run = registry_pb2.SkillRun()
    if updates[-1].state == SUCCEEDED:
        assert updates[-1].result.Unpack(run)
    return updates[-1], updates, run


def error_field(exc: grpc.aio.AioRpcError) -> str | None:
    return dict(exc.trailing_metadata() or ()).get("mlmesh-error-field")


async def test_find_or_deploy_reuses_ready_sessions_and_respects_a_halt(mesh):
    client = ServingClient.connect(mesh.serving_address, mesh.issuer, subject="test")
    sideways = mesh.ids["alpha_sideways"]
    try:
        mine = await mesh.serving.Deploy(serving_pb2.DeployRequest(model="alpha_sideways@prod", session_id="mine"))
        assert (await client.find_or_deploy(sideways, "predictor")).id == mine.id   # someone's READY session
        await mesh.serving.HaltSession(serving_pb2.HaltSessionRequest(session_id="mine", reason="drill"))
        with pytest.raises(Unavailable, match="halted in session mine"):  # never routed around the kill switch
            await client.find_or_deploy(sideways, "predictor")
        await mesh.serving.ResumeSession(serving_pb2.ResumeSessionRequest(session_id="mine"))
        bear = mesh.ids["alpha_bear"]
        found = await asyncio.gather(*(client.find_or_deploy(bear, "predictor") for _ in range(3)))
        assert len({s.id for s in found}) == 1 and found[0].state == serving_pb2.SESSION_STATE_READY
        listed = (await mesh.serving.ListSessions(serving_pb2.ListSessionsRequest())).sessions
        assert [s.id for s in listed if s.artifact_id == bear] == [found[0].id]   # one deploy, shared
    finally:
        await client.close()


async def test_regime_aware_alpha_uses_the_predictor_the_label_names(mesh):
    final, updates, run = await run_skill(mesh, "regime_aware_alpha", {"market_features": market(),
                                                                         "alpha_features": market()})
    assert final.state == SUCCEEDED, final.error
    regime, alpha = run.steps
    label = regime.output["label"]
    lock = mesh.locks["regime_aware_alpha"]
    assert label in data.REGIMES and alpha.model == f"alpha_{label}@prod"
    assert alpha.resolved_model == lock[f"alpha_{label}@prod"] == mesh.ids[f"alpha_{label}"]
    assert regime.resolved_model == lock["regime_classifier@prod"] and dict(run.resolved) == lock
    assert alpha.started_ms >= regime.started_ms + regime.duration_ms   # the selector waited for its level
    assert run.outputs["regime"] == label and run.outputs["alpha"] == alpha.output["value"]
    assert run.status == registry_pb2.SKILL_RUN_STATUS_SUCCEEDED and not run.reresolved_aliases
    assert (final.progress.done, final.progress.total, final.progress.unit) == (2, 2, "steps")
    assert {u.progress.stage for u in updates} <= {"", "regime", "alpha"}

    stored = await mesh.registry.GetSkillRun(registry_pb2.GetSkillRunRequest(id=run.id))
    assert stored == run and stored.created_by == SUBJECT
    graph = await mesh.registry.GetLineage(registry_pb2.GetLineageRequest(
        entity=f"run:{run.id}", direction=registry_pb2.LINEAGE_DIRECTION_UPSTREAM))
    sources = {e.source for e in graph.edges if e.operation == "run_skill"}
    assert sources == {f"skill:regime_aware_alpha@{run.skill_version}", f"artifact:{regime.resolved_model}",
                       f"artifact:{alpha.resolved_model}"}


async def test_multi_horizon_runs_its_independent_steps_concurrently_and_files_the_run(mesh):
    experiment = await mesh.registry.CreateExperiment(registry_pb2.CreateExperimentRequest(name="horizons"))
    ml_test = await mesh.registry.CreateTest(registry_pb2.CreateTestRequest(experiment_id=experiment.id, name="t1"))
    final, _, run = await run_skill(mesh, "multi_horizon_forecast", forecast_inputs(),
                                    experiment_id=experiment.id, test_id=ml_test.id)
    assert final.state == SUCCEEDED, final.error
    steps = {s.step_id: s for s in run.steps}
    assert set(steps) == {"next_day", "next_week", "next_month", "sentiment"}
    # One level: every step started before any finished.
    assert max(s.started_ms for s in run.steps) < min(s.started_ms + s.duration_ms for s in run.steps)
    assert [len(run.outputs[k]) for k in ("forecast_1", "forecast_5", "forecast_20")] == [1, 5, 20]
    assert run.outputs["sentiment"] in data.SENTIMENTS and -1 <= run.outputs["sentiment_score"] <= 1
    assert {s.resolved_model for s in run.steps} == {mesh.ids["price_forecaster"], mesh.ids["news_sentiment"]}

    for field, value in (("experiment_id", experiment.id), ("test_id", ml_test.id)):
        listed = await mesh.registry.ListSkillRuns(registry_pb2.ListSkillRunsRequest(**{field: value}))
        assert [r.id for r in listed.runs] == [run.id]
    sessions = (await mesh.serving.ListSessions(serving_pb2.ListSessionsRequest())).sessions
    forecasters = [s for s in sessions if s.artifact_id == mesh.ids["price_forecaster"]]
    assert len(forecasters) == 1 and forecasters[0].state == serving_pb2.SESSION_STATE_READY  # stays up, shared


async def test_a_failing_step_fails_the_run_and_names_it(mesh):
    outlier = market()
    outlier[5] = 1e4   # RSI far outside training: the classifier's OOD guard refuses it
    final, _, _ = await run_skill(mesh, "regime_aware_alpha", {"market_features": outlier, "alpha_features": market()})
    assert final.state == FAILED
    assert (final.error.code, final.error.field) == ("INVALID_ARGUMENT", "steps.regime")
    assert "OODGuard" in final.error.message and "'regime'" in final.error.message
    run = await mesh.registry.GetSkillRun(registry_pb2.GetSkillRunRequest(id=final.request["run_id"]))
    assert run.status == registry_pb2.SKILL_RUN_STATUS_FAILED and run.failed_step == "regime"
    assert [s.step_id for s in run.steps] == ["regime"] and "OODGuard" in run.steps[0].error == run.error

    # A halted session is the kill switch: the run fails at the step that needs it, and deploys nothing new.
    sessions = (await mesh.serving.ListSessions(serving_pb2.ListSessionsRequest())).sessions
    (forecaster,) = [s for s in sessions if s.artifact_id == mesh.ids["price_forecaster"]]
    await mesh.serving.HaltSession(serving_pb2.HaltSessionRequest(session_id=forecaster.id, reason="drill"))
    try:
        final, _, _ = await run_skill(mesh, "multi_horizon_forecast", forecast_inputs())
    finally:
        await mesh.serving.ResumeSession(serving_pb2.ResumeSessionRequest(session_id=forecaster.id))
    assert (final.state, final.error.code, final.error.field) == (FAILED, "UNAVAILABLE", "steps.next_day")
    run = await mesh.registry.GetSkillRun(registry_pb2.GetSkillRunRequest(id=final.request["run_id"]))
    assert run.failed_step == "next_day" and "halted" in run.error
    steps = {s.step_id: s for s in run.steps}
    assert steps["sentiment"].output["label"] and not steps["sentiment"].error   # its level finished


async def test_reresolve_aliases_uses_where_the_alias_points_now(mesh):
    locked = mesh.locks["multi_horizon_forecast"]["news_sentiment@prod"]
    moved = await mesh.publish(demo.news_sentiment(torch.Generator().manual_seed(99), 10, lambda n: None),
                               "news_sentiment", aliases=("candidate",))
    await mesh.registry.SetAlias(registry_pb2.SetAliasRequest(name="news_sentiment", alias="prod", artifact_id=moved))
    try:
        _, _, pinned = await run_skill(mesh, "multi_horizon_forecast", forecast_inputs())
        _, _, fresh = await run_skill(mesh, "multi_horizon_forecast", forecast_inputs(), reresolve_aliases=True)
    finally:
        await mesh.registry.SetAlias(registry_pb2.SetAliasRequest(name="news_sentiment", alias="prod",
                                                                  artifact_id=locked))
    sentiment = lambda run: next(s for s in run.steps if s.step_id == "sentiment")  # noqa: E731
    assert sentiment(pinned).resolved_model == locked and not pinned.reresolved_aliases
    assert sentiment(fresh).resolved_model == moved and fresh.reresolved_aliases
    assert fresh.resolved["news_sentiment@prod"] == moved
    stored = await mesh.registry.GetSkillRun(registry_pb2.GetSkillRunRequest(id=fresh.id))
    assert stored.reresolved_aliases and stored.resolved["news_sentiment@prod"] == moved


@pytest.mark.parametrize("ref,inputs,fields,code,field", [
    ("regime_aware_alpha", {"market_features": [0.1] * 6}, {}, "INVALID_ARGUMENT", "inputs.alpha_features"),
    ("regime_aware_alpha", {"market_features": [0.1] * 6, "alpha_features": [0.1] * 6, "extra": 1}, {},
     "INVALID_ARGUMENT", "inputs.extra"),
    ("regime_aware_alpha", {"market_features": "high", "alpha_features": [0.1] * 6}, {}, "INVALID_ARGUMENT",
     "inputs.market_features"),
    ("multi_horizon_forecast", {"prices": [], "headlines": ["a"]}, {}, "INVALID_ARGUMENT", "inputs.prices"),
    ("multi_horizon_forecast", {"prices": [1.0], "headlines": [3]}, {}, "INVALID_ARGUMENT", "inputs.headlines"),
    ("no_such_skill", {}, {}, "NOT_FOUND", "ref"),
    ("regime_aware_alpha@deadbeefdeadbeef", {}, {}, "NOT_FOUND", "ref"),
    ("multi_horizon_forecast", {"prices": [1.0], "headlines": ["a"]},
     {"experiment_id": "00000000-0000-4000-8000-000000000000"}, "NOT_FOUND", "experiment_id"),
    ("multi_horizon_forecast", {"prices": [1.0], "headlines": ["a"]},
     {"test_id": "00000000-0000-4000-8000-000000000000"}, "NOT_FOUND", "test_id"),
])
async def test_bad_requests_are_refused_before_any_operation(mesh, ref, inputs, fields, code, field):
    async def counts():
        ops = await mesh.operations.ListOperations(operations_pb2.ListOperationsRequest(kind="skill_run"))
        runs = await mesh.registry.ListSkillRuns(registry_pb2.ListSkillRunsRequest())
        return len(ops.operations), len(runs.runs)

    before = await counts()
    request = registry_pb2.RunSkillRequest(ref=ref, **fields)
    request.inputs.update(inputs)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.registry.RunSkill(request)
    assert (caught.value.code().name, error_field(caught.value)) == (code, field), caught.value.details()
    assert await counts() == before


LONG_FORECAST = """
name: long_forecast
inputs: {prices: series}
steps:
  - {id: far, interface: forecaster, model: price_forecaster@prod, inputs: {history: $inputs.prices, horizon: 4096}}
outputs: {forecast: $steps.far.forecast}
"""


async def settled(mesh: Mesh, run_id: str) -> registry_pb2.SkillRun:
    """The ledger entry once finished: a cancel's entry is written just after the operation's state."""
    for _ in range(100):
        run = await mesh.registry.GetSkillRun(registry_pb2.GetSkillRunRequest(id=run_id))
        if run.status != registry_pb2.SKILL_RUN_STATUS_RUNNING:
            return run
        await asyncio.sleep(0.02)
    return run


async def test_a_cancel_stops_the_run_and_the_ledger_says_so(mesh):
    await mesh.registry.PublishSkill(registry_pb2.PublishSkillRequest(spec_yaml=LONG_FORECAST))
    request = registry_pb2.RunSkillRequest(ref="long_forecast")
    request.inputs.update({"prices": forecast_inputs()["prices"]})
    started = await mesh.registry.RunSkill(request)
    await mesh.operations.CancelOperation(operations_pb2.CancelOperationRequest(id=started.id))
    updates = [u async for u in mesh.operations.WatchOperation(operations_pb2.WatchOperationRequest(id=started.id))]
    assert updates[-1].state == operations_pb2.OPERATION_STATE_CANCELLED
    run = await settled(mesh, started.request["run_id"])
    assert run.status == registry_pb2.SKILL_RUN_STATUS_CANCELLED and run.error == "cancelled by request"


async def test_a_run_cancelled_before_it_starts_is_settled_in_the_ledger(mesh, monkeypatch):
    store, set_running = mesh.app.operations, mesh.app.operations.set_running

    async def cancel_first(op_id: str):   # the cancel lands while the operation is still PENDING
        await store.request_cancel(op_id)
        return await set_running(op_id)

    monkeypatch.setattr(store, "set_running", cancel_first)
    final, _, _ = await run_skill(mesh, "multi_horizon_forecast", forecast_inputs())
    assert final.state == operations_pb2.OPERATION_STATE_CANCELLED
    run = await settled(mesh, final.request["run_id"])
    assert run.status == registry_pb2.SKILL_RUN_STATUS_CANCELLED and not run.steps
