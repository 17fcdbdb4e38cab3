"""The kill switch across replicas: three real serving replicas (in-process, each its own gRPC server on the
consecutive ports a topology with `replicas: 3` names) with sessions each. HaltAll on one halts all three and
lists every replica's results (a row of its own for a replica without sessions); this_replica_only halts just
the one asked; cancel_running travels to every replica (and `mlmesh halt / halt-all --cancel-running` ask for
it); a replica that is down or does not answer in time is reported with its address and error, never dropped.
The CLI lists and watches every replica's sessions and halts a session on each replica that holds it."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import yaml
from typer.testing import CliRunner

from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.core.topology import load_topology
from services.mesh.cli import app as cli_app
from services.registry.server import build_registry
from services.serving.server import ServingSettings, build_serving
from tests.serving.conftest import gated_segmenter

pytestmark = pytest.mark.asyncio(loop_scope="module")
REPLICAS = 3
SERIES = [0.0] * 20 + [5.0] * 20          # what the builtin change-point segmenter is given


def consecutive_free_ports(count: int) -> int:
    """A base port whose next `count` ports are all free on loopback (bound at once, then released)."""
    for _ in range(50):
        with ExitStack() as stack:
            probe = stack.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
            if base + count >= 65536:
                continue
            try:
                for port in range(base + 1, base + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


class Replica:
    def __init__(self, app, port: int, host: str = "127.0.0.1") -> None:
        self.app, self.port = app, port
        self.address = f"{host}:{port}"
        self.running = True

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.app.stop(0)


def settings_with_serving(root: Path, serving: dict) -> MeshSettings:
    """A home (the issuer key), a SQLite registry and a topology with this serving entry, under `root`."""
    topology = root / "topology.yaml"
    topology.write_text(yaml.safe_dump({"services": {"serving": {"module": "services.serving", **serving}}}))
    return MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mesh.db'}",
                        topology_file=topology)


async def replica_app(settings: MeshSettings, registry_address: str):
    """One serving replica, built but not started (in-process executor, no Triton, a 1 s fan-out)."""
    return await build_serving(settings, ServerSettings(), AuthSettings(),
                               serving=ServingSettings(executor="in_process", start_triton=False,
                                                       halt_fanout_timeout_s=1.0),
                               registry_address=registry_address)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> MeshSettings:
    """A topology whose serving entry names REPLICAS consecutive free ports."""
    return settings_with_serving(tmp_path_factory.mktemp("replicas"), {
        "host": "127.0.0.1", "port": consecutive_free_ports(REPLICAS), "replicas": REPLICAS})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(settings):
    base = load_topology(settings.topology_file).get("serving").port
    registry = await build_registry(settings, ServerSettings(), AuthSettings())
    registry_address = f"127.0.0.1:{await registry.start('127.0.0.1', 0)}"
    replicas = []
    for i in range(REPLICAS):
        app = await replica_app(settings, registry_address)
        assert await app.start("127.0.0.1", base + i) == base + i
        replicas.append(Replica(app, base + i))
    token = TokenIssuer.from_settings(settings, AuthSettings()).mint("operator", "serving", ALL_SCOPES)
    yield replicas, token
    for replica in replicas:
        await replica.stop()
    await registry.stop(0)


async def call(replica: Replica, method: str, request, token: str):
    async with grpc.aio.insecure_channel(replica.address) as channel:
        return await getattr(serving_pb2_grpc.ServingStub(channel), method)(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=10)


async def deploy(replica: Replica, session_id: str, token: str) -> None:
    await call(replica, "Deploy", serving_pb2.DeployRequest(model="builtin:changepoint", session_id=session_id), token)


async def states(replica: Replica, token: str) -> dict[str, int]:
    listed = await call(replica, "ListSessions", serving_pb2.ListSessionsRequest(), token)
    return {s.id: s.state for s in listed.sessions}


async def resume_all(replicas: list[Replica], token: str) -> None:
    for replica in (r for r in replicas if r.running):
        for session_id in await states(replica, token):
            await call(replica, "ResumeSession", serving_pb2.ResumeSessionRequest(session_id=session_id), token)


def by_replica(reply: serving_pb2.HaltAllResponse) -> dict[str, set[tuple[str, bool]]]:
    out: dict[str, set[tuple[str, bool]]] = {}
    for result in reply.results:
        out.setdefault(result.replica, set()).add((result.session_id, result.halted))
    return out


async def test_each_replica_knows_the_others(mesh):
    replicas, _ = mesh
    for replica in replicas:
        assert replica.app.servicer.replica == f"serving@{replica.address}"
        assert replica.app.fanout.peers == [r.address for r in replicas if r is not replica]


async def test_a_replica_without_sessions_is_named_in_the_answer(mesh, settings, monkeypatch):
    """Before anything is deployed: every replica reached answers a row of its own (no session id, halted), so
    an operator can tell "reached, nothing serving" from "not asked"; the count is of sessions only."""
    replicas, token = mesh
    reply = await call(replicas[0], "HaltAll", serving_pb2.HaltAllRequest(reason="empty"), token)
    assert by_replica(reply) == {f"serving@{r.address}": {("", True)} for r in replicas}
    assert reply.halted == 0 and not any(r.error for r in reply.results)
    monkeypatch.setenv("MLMESH_HOME", str(settings.home))
    monkeypatch.setenv("MLMESH_TOPOLOGY_FILE", str(settings.topology_file))
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, ["halt-all", "--reason", "empty"])
    assert result.exit_code == 0, result.output   # nothing failed to confirm
    assert result.output.count("(no sessions)") == REPLICAS and f"0 of 0 sessions halted on {REPLICAS}" in result.output


async def test_halt_all_on_one_replica_halts_every_replica(mesh):
    replicas, token = mesh
    for i, replica in enumerate(replicas):
        await deploy(replica, f"seg-{i}-a", token)
        await deploy(replica, f"seg-{i}-b", token)
        await deploy(replica, "seg-everywhere", token)   # the same id on every replica, as behind Envoy

    reply = await call(replicas[1], "HaltAll", serving_pb2.HaltAllRequest(reason="drill"), token)
    assert by_replica(reply) == {f"serving@{r.address}": {(f"seg-{i}-a", True), (f"seg-{i}-b", True),
                                                          ("seg-everywhere", True)}
                                 for i, r in enumerate(replicas)}
    assert reply.halted == 3 * REPLICAS and not any(r.error for r in reply.results)
    assert reply.results[0].replica == f"serving@{replicas[1].address}"   # the answering replica first

    for i, replica in enumerate(replicas):   # every replica refuses new work, with the reason
        assert set((await states(replica, token)).values()) == {serving_pb2.SESSION_STATE_HALTED}
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(replica, "Segment", serving_pb2.SegmentRequest(session_id=f"seg-{i}-a", series=SERIES), token)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "drill" in refused.value.details()
    await resume_all(replicas, token)


async def test_this_replica_only_leaves_the_others_serving(mesh):
    replicas, token = mesh
    reply = await call(replicas[0], "HaltAll", serving_pb2.HaltAllRequest(reason="one", this_replica_only=True),
                       token)
    assert set(by_replica(reply)) == {f"serving@{replicas[0].address}"} and reply.halted == 3
    assert set((await states(replicas[0], token)).values()) == {serving_pb2.SESSION_STATE_HALTED}
    for replica in replicas[1:]:
        assert set((await states(replica, token)).values()) == {serving_pb2.SESSION_STATE_READY}
        answer = await call(replica, "Segment", serving_pb2.SegmentRequest(session_id="seg-everywhere",
                                                                           series=SERIES), token)
        assert list(answer.change_points) == [20]
    await resume_all(replicas, token)


async def cli(settings, monkeypatch, *args: str):
    """`mlmesh ARGS` against this module's topology, in a thread (the replicas on this loop keep serving)."""
    monkeypatch.setenv("MLMESH_HOME", str(settings.home))
    monkeypatch.setenv("MLMESH_TOPOLOGY_FILE", str(settings.topology_file))
    return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args))


async def test_the_cli_lists_every_replicas_sessions_and_halts_one_wherever_it_lives(mesh, settings, monkeypatch):
    replicas, token = mesh
    listed = await cli(settings, monkeypatch, "sessions", "--json")
    assert listed.exit_code == 0, listed.output
    assert {(s["replica"], s["id"]) for s in json.loads(listed.stdout)["sessions"]} == {
        (f"serving@{r.address}", session) for i, r in enumerate(replicas)
        for session in (f"seg-{i}-a", f"seg-{i}-b", "seg-everywhere")}
    table = await cli(settings, monkeypatch, "sessions")
    assert table.exit_code == 0, table.output
    assert all(f"serving sessions on serving@{r.address}" in table.stdout for r in replicas), table.stdout
    watched = await cli(settings, monkeypatch, "sessions", "--watch", "--count", str(len(replicas)), "--json")
    assert watched.exit_code == 0, watched.output   # one stream per replica, merged: each one's first update
    last = json.loads(watched.stdout.strip().splitlines()[-1])
    assert {s["replica"] for s in last["sessions"]} == {f"serving@{r.address}" for r in replicas}

    everywhere = await cli(settings, monkeypatch, "halt", "seg-everywhere", "--reason", "cli drill", "--json")
    assert everywhere.exit_code == 0, everywhere.output
    assert sorted(s["replica"] for s in json.loads(everywhere.stdout)) == sorted(
        f"serving@{r.address}" for r in replicas)
    one = await cli(settings, monkeypatch, "halt", "seg-1-a", "--json")
    assert [s["replica"] for s in json.loads(one.stdout)] == [f"serving@{replicas[1].address}"]
    for i, replica in enumerate(replicas):
        halted = {sid for sid, state in (await states(replica, token)).items()
                  if state == serving_pb2.SESSION_STATE_HALTED}
        assert halted == ({"seg-everywhere", "seg-1-a"} if i == 1 else {"seg-everywhere"})
    missing = await cli(settings, monkeypatch, "halt", "no-such-session")
    assert missing.exit_code == 3 and "no-such-session" in missing.output   # held by no replica: NOT_FOUND

    resumed = await cli(settings, monkeypatch, "resume", "seg-everywhere", "--json")
    assert resumed.exit_code == 0 and len(json.loads(resumed.stdout)) == len(replicas)
    await resume_all(replicas, token)


async def held_segment(replica: Replica, session_id: str, token: str, gate, batches: int = 1) -> asyncio.Future:
    """A Segment call whose batch is on the model, held there by `gate` (its thread waits up to 5 s)."""
    running = asyncio.ensure_future(call(replica, "Segment", serving_pb2.SegmentRequest(
        session_id=session_id, series=SERIES), token))
    await gate.entered(batches)
    return running


async def assert_failed_at_once(running: asyncio.Future, gate, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(running, 3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and f"halted: {reason}" in refused.value.details()
    assert not gate.go.is_set()   # answered while the model was still running


async def test_cancel_running_reaches_the_other_replicas(mesh):
    replicas, token = mesh
    gate = await gated_segmenter(replicas[2].app.manager, "held")

    running = await held_segment(replicas[2], "held", token, gate)
    await call(replicas[1], "HaltAll", serving_pb2.HaltAllRequest(reason="drill"), token)
    await asyncio.sleep(0.1)
    assert not running.done()   # the default: replica 2 lets the batch on its model finish...
    gate.go.set()
    assert list((await running).change_points) == [20]   # ...and answers it in full
    await resume_all(replicas, token)

    gate.go.clear()
    running = await held_segment(replicas[2], "held", token, gate, batches=2)
    reply = await call(replicas[1], "HaltAll", serving_pb2.HaltAllRequest(reason="emergency", cancel_running=True),
                       token)
    assert ("held", True) in by_replica(reply)[f"serving@{replicas[2].address}"]
    await assert_failed_at_once(running, gate, "emergency")
    gate.go.set()
    await resume_all(replicas, token)


async def test_the_cli_cancel_running_flags_reach_serving(mesh, settings, monkeypatch):
    """`mlmesh halt S --cancel-running` and `mlmesh halt-all --cancel-running`, against the topology's serving
    address (replica 0); halt-all reaches replica 2 through the fan-out."""
    replicas, token = mesh
    monkeypatch.setenv("MLMESH_HOME", str(settings.home))
    monkeypatch.setenv("MLMESH_TOPOLOGY_FILE", str(settings.topology_file))
    one = await gated_segmenter(replicas[0].app.manager, "cli-one")
    every = await gated_segmenter(replicas[2].app.manager, "cli-every")
    for args, replica, session_id, gate in ((["halt", "cli-one"], replicas[0], "cli-one", one),
                                            (["halt-all"], replicas[2], "cli-every", every)):
        running = await held_segment(replica, session_id, token, gate)
        # The command runs its own event loop: in a thread, so the replicas on this loop keep serving.
        result = await asyncio.to_thread(CliRunner().invoke, cli_app, [*args, "--cancel-running", "--reason", "cli"])
        assert result.exit_code == 0, result.output
        await assert_failed_at_once(running, gate, "cli")
        gate.go.set()
        await resume_all(replicas, token)
    # Replica 0's sessions are counted exactly below: this one goes (halt_all passes over undeployed sessions).
    await call(replicas[0], "UndeploySession", serving_pb2.UndeploySessionRequest(session_id="cli-one"), token)


async def test_a_replica_that_does_not_answer_is_reported(mesh):
    replicas, token = mesh
    # Replica 1 hangs: something holds its port and accepts connections but never speaks HTTP/2.
    # Replica 2 is down: nothing listens on its port any more.
    await replicas[2].stop()
    await replicas[1].stop()
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", replicas[1].port))
        silent.listen()
        reply = await call(replicas[0], "HaltAll", serving_pb2.HaltAllRequest(reason="partial"), token)

    results = {r.replica: r for r in reply.results if not r.session_id}
    hung, down = results[f"serving@{replicas[1].address}"], results[f"serving@{replicas[2].address}"]
    assert not hung.halted and "DEADLINE_EXCEEDED" in hung.error, hung.error
    assert not down.halted and "UNAVAILABLE" in down.error, down.error
    assert all(e.startswith("replica did not confirm the halt: ") for e in (hung.error, down.error))
    mine = {(r.session_id, r.halted) for r in reply.results if r.replica == f"serving@{replicas[0].address}"}
    assert mine == {("seg-0-a", True), ("seg-0-b", True), ("seg-everywhere", True)}
    assert reply.halted == 3 and len(reply.results) == 5


async def test_the_cli_names_the_replicas_it_could_not_list(mesh, settings, monkeypatch):
    """After the test above, replicas 1 and 2 are down: `mlmesh sessions` still lists replica 0's and exits 1
    naming the two it could not reach."""
    replicas, _ = mesh
    listed = await cli(settings, monkeypatch, "sessions")
    assert listed.exit_code == 1
    assert "seg-0-a" in listed.stdout
    for replica in replicas[1:]:
        assert f"replica serving@{replica.address}" in listed.stderr and "not reachable" in listed.stderr
    watched = await cli(settings, monkeypatch, "sessions", "--watch", "--count", "5")
    assert watched.exit_code == 1 and "not reachable" in watched.stderr   # a stream that cannot start: named
    assert any(f"at {replica.address}" in watched.stderr for replica in replicas[1:]), watched.stderr
