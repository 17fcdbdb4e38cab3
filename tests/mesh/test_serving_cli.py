"""The serving verbs (`serve`, `sessions`, typed calls, `halt` / `resume` / `halt-all`) against real registry
and serving processes on free ports, with small models saved signed and registered as the demo does."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.models.architectures import build_module
from services.core.settings import AuthSettings, MeshSettings
from services.mesh.cli import app
from tests.mesh.conftest import service_processes

MLP = {"type": "mlp", "layers": [4, 16, 2]}
LSTM = {"type": "lstm_forecaster", "input_size": 1, "hidden_size": 8, "num_layers": 1, "window": 8}
BOW = {"type": "hashed_bow_linear", "buckets": 64, "classes": 3, "hash": "crc32", "tokenizer": "[a-z0-9']+"}
MODELS = {  # name -> (architecture, save kwargs)
    "cli_mlp": (MLP, {"training_stats": {"mean": [0.0] * 4, "std": [1.0] * 4}, "feature_names": ["a", "b", "c", "d"],
                      "metadata": {"interface": "predictor"}}),
    "cli_lstm": (LSTM, {"training_stats": {"mean": [0.0], "std": [1.0]}, "metadata": {"interface": "forecaster"}}),
    "cli_bow": (BOW, {"metadata": {"interface": "analyzer", "class_labels": ["negative", "neutral", "positive"]}}),
}


async def register(mesh: MeshSettings, registry_address: str) -> dict[str, torch.nn.Module]:
    kit = build_artifact_toolkit(mesh, LineageBus(), service="test", write_scope=REGISTRY_WRITE,
                                 read_scope=REGISTRY_WRITE)
    token = set_principal(Principal("test", frozenset(ALL_SCOPES), "registry", "t", time.time() + 60))
    registry = RegistryClient.connect(registry_address, TokenIssuer.from_settings(mesh, AuthSettings()), subject="t")
    modules = {}
    try:
        for name, (architecture, kwargs) in MODELS.items():
            torch.manual_seed(11)
            modules[name] = build_module(architecture).eval()
            saved = await kit.saver.save(modules[name].state_dict(), architecture=architecture, **kwargs)
            await registry.register_artifact(saved.manifest, name=name, aliases=["prod"],
                                             signature=signature_message(kit.signer, saved.signature))
        return modules
    finally:
        reset_principal(token)
        await registry.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    extra = {"MLMESH_SERVING_START_TRITON": "false", "MLMESH_SERVING_EXECUTOR": "in_process"}
    with service_processes(tmp_path_factory.mktemp("serving-cli"), ("registry", "serving"), extra) as (env, at):
        modules = asyncio.run(register(MeshSettings(home=Path(env["MLMESH_HOME"])), at["registry"]))
        yield env, modules


@pytest.fixture
def cli(mesh, monkeypatch) -> CliRunner:
    for key in ("MLMESH_HOME", "MLMESH_TOPOLOGY_FILE"):
        monkeypatch.setenv(key, mesh[0][key])
    return CliRunner()


def invoke(cli: CliRunner, *args: str, code: int = 0):
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def deployed(cli: CliRunner, session_id: str, model: str, *extra: str) -> dict:
    return json.loads(invoke(cli, "serve", model, "--session-id", session_id, "--json", *extra).stdout)


def test_serve_then_predict_answers_what_the_model_computes(cli, mesh):
    session = deployed(cli, "mlp", "cli_mlp@prod", "--interface", "predictor", "--executor", "in_process",
                       "--max-batch-size", "8", "--max-queue-delay-us", "100")
    assert session["state"] == "SESSION_STATE_READY" and session["executor"] == "EXECUTOR_KIND_IN_PROCESS"
    assert session["batching"]["max_batch_size"] == 8 and session["batching"]["max_queue_delay_us"] == 100
    reply = json.loads(invoke(cli, "predict", "mlp", "--features", "0.1,-0.2,0.3,0.4", "--row", "1 2 3 -4",
                              "--json").stdout)
    with torch.inference_mode():
        want = mesh[1]["cli_mlp"](torch.tensor([[0.1, -0.2, 0.3, 0.4], [1, 2, 3, -4]])).tolist()
    got = [v for p in reply["predictions"] for v in p["values"]]
    assert got == pytest.approx([v for row in want for v in row], abs=1e-5)
    assert reply["meta"]["session_id"] == "mlp"
    named = json.loads(invoke(cli, "predict", "mlp", "--named", "a=0.1,b=-0.2", "--named", "c=0.3", "--named",
                              "d=0.4", "--json").stdout)
    assert named["predictions"][0]["values"] == pytest.approx(want[0], abs=1e-5)
    human = invoke(cli, "predict", "mlp", "--features", "0,0,0,0").output
    assert "batch" in human and "compute" in human


def test_forecast_analyze_and_segment_from_the_command_line(cli):
    deployed(cli, "lstm", "cli_lstm@prod")
    reply = json.loads(invoke(cli, "forecast", "lstm", "--history", ",".join(["0.5"] * 10), "--horizon", "3",
                              "--json").stdout)
    assert len(reply["forecast"]) == 3
    deployed(cli, "bow", "cli_bow@prod", "--interface", "analyzer")
    reply = json.loads(invoke(cli, "analyze", "bow", "--text", "stocks rally", "--text", "bad day", "--json").stdout)
    assert [a["label"] in ("negative", "neutral", "positive") for a in reply["analyses"]] == [True, True]
    deployed(cli, "cp", "builtin:changepoint", "--interface", "segmenter")
    series = ",".join(["0"] * 30 + ["5"] * 30)
    reply = json.loads(invoke(cli, "segment", "cp", "--series", series, "--json").stdout)
    assert reply["change_points"] == ["30"]   # int64 prints as a JSON string (proto3 JSON mapping)
    assert "change points: 30" in invoke(cli, "segment", "cp", "--series", series).output


def test_sessions_lists_live_figures_and_watch_streams_them(cli):
    deployed(cli, "listed", "cli_mlp@prod")
    invoke(cli, "predict", "listed", "--features", "1,2,3,4")
    listed = {s["id"]: s for s in json.loads(invoke(cli, "sessions", "--json").stdout)["sessions"]}
    assert listed["listed"]["state"] == "SESSION_STATE_READY"
    assert int(listed["listed"]["stats"]["requests_total"]) >= 1
    assert "listed" in invoke(cli, "sessions").output
    watched = invoke(cli, "sessions", "--watch", "--json", "--count", "1", "--interval", "0.2").stdout
    lines = watched.strip().splitlines()
    assert len(lines) == 1 and "listed" in {s["id"] for s in json.loads(lines[0])["sessions"]}
    table = invoke(cli, "sessions", "--watch", "--count", "1").output
    assert "listed" in table and "p50/p99 ms" in table


def test_halt_refuses_with_the_reason_and_resume_serves_again(cli):
    deployed(cli, "stop-me", "cli_mlp@prod")
    halted = json.loads(invoke(cli, "halt", "stop-me", "--reason", "bad data upstream", "--json").stdout)
    assert halted["state"] == "SESSION_STATE_HALTED" and halted["halt_reason"] == "bad data upstream"
    refused = invoke(cli, "predict", "stop-me", "--features", "1,2,3,4", code=1)
    assert "halted: bad data upstream" in refused.output
    assert "READY" in invoke(cli, "resume", "stop-me", "--json").stdout
    invoke(cli, "predict", "stop-me", "--features", "1,2,3,4")


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["predict", "nobody", "--features", "1,2,3,4"], 3, "nobody"),
        (["predict", "mlp", "--features", "1,x,3,4"], 2, "'x' is not a number"),
        (["predict", "mlp", "--named", "a"], 2, "NAME=VALUE"),
        (["predict", "mlp"], 2, "--features"),
        (["predict", "mlp", "--features", "1,2,3"], 2, "rows"),
        (["predict", "mlp", "--features", "1,nan,3,4"], 2, "FiniteGuard"),
        (["serve", "nobody@prod"], 3, "nobody"),
        (["serve", "cli_mlp@prod", "--interface", "oracle"], 2, "interface"),
        (["serve", "cli_mlp@prod", "--executor", "gpu"], 2, "executor"),
        (["serve", "cli_mlp@prod", "--interface", "forecaster"], 2, "interface"),
        (["halt", "nobody"], 3, "nobody"),
        (["forecast", "mlp", "--history", "1,2,3"], 1, "forecaster"),
    ],
)
def test_bad_requests_exit_with_one_line_and_the_code(cli, args, code, needle):
    result = invoke(cli, *args, code=code)
    assert needle in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_halt_all_halts_every_session_and_prints_each(cli):
    deployed(cli, "all-1", "cli_mlp@prod")
    reply = json.loads(invoke(cli, "halt-all", "--reason", "incident 42", "--json").stdout)
    results = {r["session_id"]: r for r in reply["results"]}
    assert {"all-1", "mlp"} <= set(results) and all(r["halted"] for r in results.values())
    assert reply["halted"] == len(results)
    refused = invoke(cli, "predict", "all-1", "--features", "1,2,3,4", code=1)
    assert "halted: incident 42" in refused.output
    human = invoke(cli, "halt-all").output   # already halted: each is still reported
    assert "all-1" in human and "sessions halted" in human
