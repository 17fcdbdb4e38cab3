"""`mlmesh pull` against real registry and puller processes and a local hub: progress, result, refusals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from services.mesh.cli import app
from tests.mesh.conftest import service_processes
from tests.puller.conftest import safetensors_bytes, torch_pickle_bytes, tiny_state_dict
from tests.puller.hub import LocalHub


@pytest.fixture(scope="module")
def hub():
    server = LocalHub().start()
    server.add_commit("org/tiny", {"config.json": b'{"hidden": 4}', "model.safetensors": safetensors_bytes(3)})
    server.add_commit("org/legacy", {"pytorch_model.bin": torch_pickle_bytes(tiny_state_dict(5))})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, hub):
    with service_processes(tmp_path_factory.mktemp("pull-mesh"), ("registry", "puller"),
                           {"MLMESH_PULLER_HF_ENDPOINT": hub.url}) as (env, _):
        yield env


@pytest.fixture
def cli(mesh, monkeypatch) -> CliRunner:
    for key in ("MLMESH_HOME", "MLMESH_TOPOLOGY_FILE"):
        monkeypatch.setenv(key, mesh[key])
    return CliRunner()


def test_pull_registers_a_verified_artifact_and_prints_it(cli, hub):
    result = cli.invoke(app, ["pull", "hf://org/tiny", "--name", "tiny", "--alias", "prod", "--json"])
    assert result.exit_code == 0, result.output
    operation = json.loads(result.output)
    assert operation["state"] == "OPERATION_STATE_SUCCEEDED"
    artifact = operation["result"]
    assert artifact["name"] == "tiny" and "tiny@prod" in artifact["aliases"]
    assert artifact["source_uri"].startswith("hf://org/tiny@")
    shown = cli.invoke(app, ["artifacts", "show", "tiny@prod", "--json"])
    assert json.loads(shown.output)["id"] == artifact["id"]
    human = cli.invoke(app, ["pull", "hf://org/tiny", "--name", "tiny"])
    assert human.exit_code == 0 and artifact["id"][:20] in human.output.replace("\n", "")


def test_pickle_only_repo_is_refused_with_its_reason(cli):
    result = cli.invoke(app, ["pull", "hf://org/legacy"])
    assert result.exit_code == 1
    assert "allow_pickle" in result.output and "pytorch_model.bin" in result.output


def test_bad_source_exits_2_naming_the_field(cli):
    result = cli.invoke(app, ["pull", "ftp://nowhere/model"])
    assert result.exit_code == 2
    assert "source" in result.output
