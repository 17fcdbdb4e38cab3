"""`mlmesh compile` and `mlmesh compilers` against real registry and compiler processes."""

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

ARCHITECTURE = {"type": "mlp", "layers": [4, 16, 2]}


async def register_mlp(mesh: MeshSettings, registry_address: str) -> str:
    torch.manual_seed(7)
    kit = build_artifact_toolkit(mesh, LineageBus(), service="test", write_scope=REGISTRY_WRITE,
                                 read_scope=REGISTRY_WRITE)
    token = set_principal(Principal("test", frozenset(ALL_SCOPES), "registry", "t", time.time() + 60))
    registry = RegistryClient.connect(registry_address, TokenIssuer.from_settings(mesh, AuthSettings()), subject="t")
    try:
        saved = await kit.saver.save(build_module(ARCHITECTURE).state_dict(), architecture=ARCHITECTURE,
                                     training_stats={"mean": [0.0] * 4, "std": [1.0] * 4},
                                     feature_names=["a", "b", "c", "d"])
        await registry.register_artifact(saved.manifest, name="tiny_mlp", aliases=["prod"],
                                         signature=signature_message(kit.signer, saved.signature))
        return saved.artifact_id
    finally:
        reset_principal(token)
        await registry.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with service_processes(tmp_path_factory.mktemp("compile-mesh"), ("registry", "compiler")) as (env, at):
        artifact_id = asyncio.run(register_mlp(MeshSettings(home=Path(env["MLMESH_HOME"])), at["registry"]))
        yield env, artifact_id


@pytest.fixture
def cli(mesh, monkeypatch) -> CliRunner:
    for key in ("MLMESH_HOME", "MLMESH_TOPOLOGY_FILE"):
        monkeypatch.setenv(key, mesh[0][key])
    return CliRunner()


def test_compile_to_onnx_registers_a_validated_output(cli, mesh):
    result = cli.invoke(app, ["compile", "tiny_mlp@prod", "--target", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    operation = json.loads(result.output)
    compiled = operation["result"]
    assert operation["state"] == "OPERATION_STATE_SUCCEEDED"
    assert compiled["source_artifact_id"] == mesh[1] and compiled["triton_platform"] == "onnxruntime_onnx"
    assert compiled["validation"]["passed"] is True
    assert compiled["signature"]["bundle"] and compiled["signature"]["key_id"]
    human = cli.invoke(app, ["compile", "tiny_mlp", "--target", "onnx"])
    assert human.exit_code == 0 and "onnxruntime_onnx" in human.output
    assert f"yes, key {compiled['signature']['key_id']}" in human.output


def test_compilers_lists_tensorrt_as_unavailable_with_a_reason(cli):
    result = cli.invoke(app, ["compilers", "--json"])
    assert result.exit_code == 0, result.output
    listed = {c["alias"]: c for c in json.loads(result.output)["compilers"]}
    assert {"onnx", "torchscript", "quantization", "tensorrt"} <= set(listed)
    assert listed["onnx"]["available"] is True
    if not torch.cuda.is_available():
        assert listed["tensorrt"].get("available", False) is False and listed["tensorrt"]["reason"]


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["compile", "tiny_mlp", "--target", "nonsense"], 2, "target"),
        (["compile", "nobody@prod"], 3, "artifact"),
        (["compile", "tiny_mlp", "--kwarg", "bogus=1"], 2, "kwargs.bogus"),
    ],
)
def test_bad_compile_requests_exit_with_the_field(cli, args, code, needle):
    result = cli.invoke(app, args)
    assert result.exit_code == code, result.output
    assert needle in result.output
