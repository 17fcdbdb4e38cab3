"""PostgreSQL connections killed under registry traffic (issue 17): calls caught by the outage answer
UNAVAILABLE, never INTERNAL, and calls succeed again afterwards with no restart. The outage is
`pg_terminate_backend` on every backend of this test's own database; the shared cluster keeps running."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import asyncpg
import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from mlmesh.v1 import operations_pb2, operations_pb2_grpc, registry_pb2
from services.core.artifacts.messages import manifest_dict
from services.core.db import make_engine
from services.core.db.schema import artifacts, ml_skill_runs
from services.core.errors import Unavailable
from tests.registry.conftest import manifest

# Real PostgreSQL only: SQLite has no server connections to lose.
pytestmark = pytest.mark.postgres
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
KILL = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"


async def _killer(database_url: str, times: int, every_s: float) -> int:
    """Terminates every backend of the registry's database `times` times; how many backends it killed."""
    url = make_url(database_url)
    admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database="postgres")
    killed = 0
    try:
        for _ in range(times):
            killed += await admin.fetchval(KILL, url.database)
            await asyncio.sleep(every_s)
    finally:
        await admin.close()
    return killed


async def _code(call) -> grpc.StatusCode:
    try:
        await call
        return OK
    except grpc.aio.AioRpcError as exc:
        return exc.code()


@ON_POSTGRES
async def test_reads_under_killed_connections_answer_unavailable_and_recover(stub, database_url):
    artifact = await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(manifest=manifest("read"), name="r"))
    codes: list[grpc.StatusCode] = []
    stop = asyncio.Event()

    async def reader(index: int) -> None:
        while not stop.is_set():
            if index % 2:
                codes.append(await _code(stub.GetArtifact(registry_pb2.GetArtifactRequest(ref=artifact.id))))
            else:
                codes.append(await _code(stub.ListSkills(registry_pb2.ListSkillsRequest())))

    readers = [asyncio.create_task(reader(i)) for i in range(6)]
    try:
        killed = await _killer(database_url, times=25, every_s=0.05)
    finally:
        stop.set()
        await asyncio.gather(*readers)

    assert killed > 0
    assert set(codes) <= {OK, UNAVAILABLE}, sorted({c.name for c in codes})
    assert UNAVAILABLE in codes, "no call was caught by the outage: the test proved nothing"
    # Afterwards, with nothing restarted: every call succeeds, the first one included.
    got = await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref=artifact.id))
    assert got.id == artifact.id
    for _ in range(10):
        await stub.ListSkills(registry_pb2.ListSkillsRequest())


@ON_POSTGRES
async def test_a_write_caught_by_the_kill_answers_unavailable_and_its_retry_records_it_once(
    stub, registry, database_url
):
    seeds = [f"write-{i}" for i in range(40)]
    codes: list[grpc.StatusCode] = []

    async def register_until_ok(seed: str) -> str:
        # What a client does with UNAVAILABLE: retry. Registration is idempotent (content-addressed).
        deadline = time.monotonic() + 20
        while True:
            try:
                request = registry_pb2.RegisterArtifactRequest(manifest=manifest(seed), name=seed)
                artifact = await stub.RegisterArtifact(request)
                codes.append(OK)
                return artifact.id
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
                if exc.code() != UNAVAILABLE or time.monotonic() > deadline:
                    raise

    async def writers() -> list[str]:
        out = []
        for batch in range(0, len(seeds), 4):
            out += await asyncio.gather(*(register_until_ok(s) for s in seeds[batch:batch + 4]))
        return out

    ids, _ = await asyncio.gather(writers(), _killer(database_url, times=25, every_s=0.05))

    assert set(codes) <= {OK, UNAVAILABLE}, sorted({c.name for c in codes})
    assert UNAVAILABLE in codes, "no write was caught by the outage: the test proved nothing"
    async with registry.engine.connect() as conn:
        rows = (await conn.execute(sa.select(artifacts.c.id, artifacts.c.name))).all()
    assert sorted(rows) == sorted(zip(ids, seeds, strict=True))  # every write landed, each exactly once
    for artifact_id, seed in zip(ids, seeds, strict=True):
        got = await stub.GetArtifact(registry_pb2.GetArtifactRequest(ref=f"{seed}@latest"))
        assert got.id == artifact_id


ONE_STEP = """
name: one_forecast
inputs: {prices: series}
steps:
  - {id: far, interface: forecaster, model: price_forecaster@prod, inputs: {history: $inputs.prices, horizon: 3}}
outputs: {forecast: $steps.far.forecast}
"""


class HeldServing:
    """Stands in for serving: the step's forecast waits until the test lets it answer."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def find_or_deploy(self, artifact_id: str, interface: str):
        return SimpleNamespace(id="session-1")

    async def forecast(self, session_id: str, history, horizon: int) -> list[float]:
        await self.release.wait()
        return [float(history[-1])] * horizon


@ON_POSTGRES
async def test_a_run_whose_ledger_write_is_killed_ends_once_with_its_outcome(
    stub, registry, channel, operator_metadata, database_url, monkeypatch
):
    serving = HeldServing()
    monkeypatch.setattr(registry.runtime.serving, "client", lambda: serving)
    model = manifest_dict(manifest("price_forecaster"))
    await registry.domain.artifacts.register(model, actor="t", name="price_forecaster", aliases=["prod"])
    await registry.domain.skills.publish(ONE_STEP, actor="t")
    request = registry_pb2.RunSkillRequest(ref="one_forecast")
    request.inputs.update({"prices": [1.0, 2.0, 3.0]})
    started = await stub.RunSkill(request)
    run_id = started.request["run_id"]

    # Hold the run's ledger row, so the run's final write is in flight on the server when the backends die.
    url = make_url(database_url)
    holder = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM ml_skill_runs WHERE id = $1 FOR UPDATE", run_id)
        serving.release.set()
        for _ in range(500):   # until the registry's UPDATE waits on the lock
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", url.database)
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the run's final write never reached the database"
        killed = await holder.fetchval(KILL.replace("pg_backend_pid()", "pg_backend_pid() AND pid <> $2"),
                                       url.database, holder.get_server_pid())
        assert killed > 0
        await hold.rollback()
    finally:
        await holder.close()

    operations = operations_pb2_grpc.OperationsStub(channel)
    watch = operations_pb2.WatchOperationRequest(id=started.id)
    final = [u async for u in operations.WatchOperation(watch, metadata=operator_metadata)][-1]
    assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error
    run = await stub.GetSkillRun(registry_pb2.GetSkillRunRequest(id=run_id))
    assert run.status == registry_pb2.SKILL_RUN_STATUS_SUCCEEDED, run.error   # not lost, not turned into FAILED
    assert list(run.outputs["forecast"]) == [3.0, 3.0, 3.0]
    async with registry.engine.connect() as conn:
        rows = (await conn.execute(sa.select(ml_skill_runs.c.id, ml_skill_runs.c.status))).all()
    assert rows == [(run_id, "SUCCEEDED")]   # recorded exactly once


async def test_a_refused_connect_is_unavailable():
    with socket.socket() as probe:   # a port nothing listens on: PostgreSQL down or restarting
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/mlmesh")
    try:
        with pytest.raises(Unavailable, match="the database is unreachable; retry"):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()


@ON_POSTGRES
async def test_errors_of_a_live_connection_are_left_alone(engine):
    # Retrying a bad statement or a constraint violation would not help: those are not outages.
    with pytest.raises(ProgrammingError):
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELEC 1"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TEMP TABLE once (x int PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO once VALUES (1), (1)"))
