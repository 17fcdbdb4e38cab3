"""`mlmesh up --demo` with serving in the topology serves the demo models and runs both seed skills; then
`mlmesh skills run` against those processes: progress, outputs, ledger links, refusals, a failing step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from mlmesh.v1 import registry_pb2, serving_pb2, serving_pb2_grpc
from services.mesh import output as out
from services.mesh.cli import app
from services.mesh.client import MeshClient
from services.mesh.demo import data
from tests.mesh.conftest import REPO, free_port, write_topology
from tests.mesh.test_up import READY_TIMEOUT_S, read_json_line

ROW = [round(v, 6) for v in data.market(1, torch.Generator().manual_seed(3), regime=0)[0][0].tolist()]
PRICES = [round(v, 4) for v in data.price_series(1, 48, torch.Generator().manual_seed(4))[0].tolist()]


@pytest.fixture(scope="module")
def demo_mesh(tmp_path_factory):
    root = tmp_path_factory.mktemp("skills-mesh")
    ports = {"registry": free_port(), "serving": free_port()}
    topology = write_topology(root / "topology.yaml", {
        name: {"module": f"services.{name}", "host": "127.0.0.1", "port": port} for name, port in ports.items()})
    env = {"MLMESH_HOME": str(root / "home"), "MLMESH_TOPOLOGY_FILE": str(topology),
           "MLMESH_SERVING_EXECUTOR": "in_process"}   # no Triton start: the demo stays fast on any machine
    process = subprocess.Popen([sys.executable, "-m", "services.mesh", "up", "--demo", "--json"], cwd=REPO,
                               env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield env, read_json_line(process, READY_TIMEOUT_S)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert json.loads(stdout.strip().splitlines()[-1]) == {"stopped": {"registry": 0, "serving": 0}}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def cli(demo_mesh, monkeypatch) -> CliRunner:
    for key, value in demo_mesh[0].items():
        monkeypatch.setenv(key, value)
    return CliRunner()


def run_cli(cli: CliRunner, *args: str):
    return cli.invoke(app, ["skills", "run", *args])


async def ledger_and_sessions(client: MeshClient):
    async with client.registry() as registry:
        runs = (await registry.ListSkillRuns(registry_pb2.ListSkillRunsRequest())).runs
    async with client.channel("serving") as channel:
        serving = serving_pb2_grpc.ServingStub(channel)
        sessions = (await serving.ListSessions(serving_pb2.ListSessionsRequest())).sessions
    return runs, sessions


def test_the_demo_serves_its_models_and_runs_both_seed_skills(cli, demo_mesh):
    ready = demo_mesh[1]
    assert {s["service"] for s in ready["services"]} == {"registry", "serving"}
    runs, sessions = out.run(ledger_and_sessions(MeshClient()))
    demo_runs = {r.skill_name: r for r in runs if r.created_by == "operator"}
    assert set(demo_runs) >= {"regime_aware_alpha", "multi_horizon_forecast"}
    assert all(r.status == registry_pb2.SKILL_RUN_STATUS_SUCCEEDED for r in demo_runs.values())
    assert len(demo_runs["multi_horizon_forecast"].outputs["forecast_20"]) == 20
    served = {s.artifact_id for s in sessions if s.state == serving_pb2.SESSION_STATE_READY}
    assert {a["id"] for a in ready["demo"]["artifacts"]} <= served


def test_skills_run_shows_the_outputs_and_every_step(cli):
    result = run_cli(cli, "regime_aware_alpha", "--input", f"market_features={json.dumps(ROW)}",
                     "--input", f"alpha_features={json.dumps(ROW)}")
    assert result.exit_code == 0, result.output
    assert "SUCCEEDED" in result.output and "regime_probability" in result.output
    assert "regime_classifier@prod" in result.output and "alpha_" in result.output


def test_skills_run_json_files_the_run_under_an_experiment(cli):
    async def experiment() -> tuple[str, str]:
        async with MeshClient().registry() as registry:
            made = await registry.CreateExperiment(registry_pb2.CreateExperimentRequest(name="cli"))
            test = await registry.CreateTest(registry_pb2.CreateTestRequest(experiment_id=made.id, name="t"))
            return made.id, test.id

    experiment_id, test_id = out.run(experiment())
    result = run_cli(cli, "multi_horizon_forecast@latest", "--input", f"prices={json.dumps(PRICES)}",
                     "--input", 'headlines=["acme beats record growth", "globex plunges on fraud"]',
                     "--experiment", experiment_id, "--test", test_id, "--reresolve", "--json")
    assert result.exit_code == 0, result.output
    operation = json.loads(result.output)
    run = operation["result"]
    assert operation["state"] == "OPERATION_STATE_SUCCEEDED"
    assert int(operation["progress"]["done"]) == 4   # int64 is a JSON string
    assert (run["experiment_id"], run["test_id"], run["reresolved_aliases"]) == (experiment_id, test_id, True)
    assert [len(run["outputs"][k]) for k in ("forecast_1", "forecast_5", "forecast_20")] == [1, 5, 20]


@pytest.mark.parametrize("args,code,needle", [
    (["regime_aware_alpha", "--input", "market_features=[1, 2, 3, 4, 5, 6]"], 2, "inputs.alpha_features"),
    (["multi_horizon_forecast", "--input", "prices=[1, 2", "--input", 'headlines=["x"]'], 2, "inputs.prices"),
    (["multi_horizon_forecast", "--input", "prices=[1]", "--input", "headlines=calm"], 2, "inputs.headlines"),
    (["no_such_skill"], 3, "ref"),
    (["multi_horizon_forecast", "--input", "prices=[1]", "--input", 'headlines=["x"]', "--experiment",
      "00000000-0000-4000-8000-000000000000"], 3, "experiment_id"),
])
def test_bad_runs_exit_with_the_field(cli, args, code, needle):
    result = run_cli(cli, *args)
    assert result.exit_code == code, result.output
    assert needle in result.output


def test_a_failing_step_exits_non_zero_naming_the_step(cli):
    outlier = [*ROW[:5], 1e4]   # RSI far outside training: the regime classifier's OOD guard refuses it
    result = run_cli(cli, "regime_aware_alpha", "--input", f"market_features={json.dumps(outlier)}",
                     "--input", f"alpha_features={json.dumps(ROW)}")
    assert result.exit_code == 2, result.output
    assert "FAILED" in result.output and "steps.regime" in result.output and "OODGuard" in result.output
