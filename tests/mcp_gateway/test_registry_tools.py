"""Registry-backed tools through a real MCP session against the real registry: list_models, list_skills,
lineage, operation_status; errors an agent can act on; the audit trail; the gateway's own identity."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import grpc
import pytest

from mlmesh.v1 import registry_pb2, registry_pb2_grpc
from services.core.auth.policy import ALL_SCOPES
from tests.mcp_gateway.conftest import mcp_http
from tests.registry.conftest import SEED_MODELS, manifest

SKILLS = Path(__file__).resolve().parents[2] / "configs" / "skills"


@pytest.fixture
async def seeded(registry, issuer):
    """The six seed model names (alias prod) and both seed skills, registered by an operator."""
    metadata = (("authorization", f"Bearer {issuer.mint('test-operator', 'registry', ALL_SCOPES)}"),)
    async with grpc.aio.insecure_channel(registry.address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        ids = {}
        for name in SEED_MODELS:
            ids[name] = (await stub.RegisterArtifact(registry_pb2.RegisterArtifactRequest(
                manifest=manifest(name), name=name, aliases=["prod"]), metadata=metadata)).id
        for skill in ("regime_aware_alpha", "multi_horizon_forecast"):
            await stub.PublishSkill(registry_pb2.PublishSkillRequest(
                spec_yaml=(SKILLS / f"{skill}.yaml").read_text()), metadata=metadata)
    return ids


async def test_list_models_skills_and_lineage(http_app, agent_token, seeded):
    async with mcp_http(http_app, agent_token()) as client:
        models = (await client.call_tool("data.ml.list_models", {})).structured_content
        assert sorted(m["name"] for m in models["models"]) == sorted(SEED_MODELS)
        forecaster = next(m for m in models["models"] if m["name"] == "price_forecaster")
        assert forecaster["id"] == seeded["price_forecaster"] and "price_forecaster@prod" in forecaster["aliases"]
        assert forecaster["files"] == 2 and forecaster["framework"] == "torch" and forecaster["created_at"]

        page = (await client.call_tool("data.ml.list_models", {"page_size": 4})).structured_content
        rest = (await client.call_tool("data.ml.list_models", {
            "page_size": 4, "page_token": page["next_page_token"]})).structured_content
        assert len(page["models"]) == 4 and len(rest["models"]) == 2 and rest["next_page_token"] == ""
        only = (await client.call_tool("data.ml.list_models", {"name": "alpha_bull"})).structured_content
        assert [m["id"] for m in only["models"]] == [seeded["alpha_bull"]]

        skills = (await client.call_tool("data.ml.list_skills", {})).structured_content["skills"]
        assert {s["name"] for s in skills} == {"regime_aware_alpha", "multi_horizon_forecast"}
        assert all(len(s["latest_version"]) == 64 and s["version_count"] == 1 for s in skills)

        graph = (await client.call_tool("data.ml.lineage", {"entity": seeded["price_forecaster"],
                                                            "direction": "downstream"})).structured_content
        assert graph["root"] == f"artifact:{seeded['price_forecaster']}"
        assert any(e["operation"] == "publish_skill" and e["target"].startswith("skill:multi_horizon_forecast@")
                   for e in graph["edges"])
        assert graph["events"] and graph["events"][0]["actor"] == "test-operator"


async def test_errors_name_the_argument_and_say_what_to_do(http_app, agent_token, seeded, access_log):
    async with mcp_http(http_app, agent_token()) as client:
        unknown = await client.call_tool("data.ml.run_skill", {"skill": "no_such_skill", "inputs": {}})
        assert unknown.is_error and unknown.structured_content is None
        text = unknown.content[0].text
        assert text.startswith("NOT_FOUND (argument `skill`): no skill named no_such_skill") and "Traceback" not in text
        assert unknown.meta["mlmesh/error"] == {"code": "NOT_FOUND", "argument": "skill",
                                                "message": "no skill named no_such_skill"}

        bad_ref = await client.call_tool("data.ml.run_skill", {"skill": "multi_horizon_forecast@zz"})
        assert bad_ref.content[0].text.startswith("INVALID_ARGUMENT (argument `skill`)")

        no_op = await client.call_tool("data.ml.operation_status", {"operation_id": "nope"})
        assert no_op.meta["mlmesh/error"]["code"] == "NOT_FOUND"
        assert no_op.meta["mlmesh/error"]["argument"] == "operation_id"

        calls_before = len(access_log.calls())
        for arguments, argument in (({"entity": ""}, "entity"), ({"entity": "x", "depth": 99}, "depth"),
                                    ({"entity": "x", "bogus": 1}, "bogus"), ({"entity": "x", "depth": "deep"}, "depth"),
                                    ({}, "entity")):
            result = await client.call_tool("data.ml.lineage", arguments)
            assert result.is_error and result.meta["mlmesh/error"]["argument"] == argument, arguments
            assert result.content[0].text.startswith(f"INVALID_ARGUMENT (argument `{argument}`)")
        assert len(access_log.calls()) == calls_before   # refused before any backend call
        assert "takes entity, direction, depth" in (await client.call_tool(
            "data.ml.lineage", {"entity": "x", "bogus": 1})).content[0].text

        down = await client.call_tool("data.ml.compile", {"artifact": "alpha_bull", "target": "onnx"})
        assert down.content[0].text.startswith("UNAVAILABLE: the compiler service at 127.0.0.1:9 is not reachable")

        with pytest.raises(Exception, match="Unknown tool"):
            result = await client.call_tool("data.ml.nope", {})
            if result.is_error:
                raise RuntimeError(result.content[0].text)


async def test_backends_see_the_gateway_and_every_call_is_audited(http_app, agent_token, seeded, access_log,
                                                                  audit_lines):
    arguments = {"name": "alpha_bear", "page_size": 10}
    async with mcp_http(http_app, agent_token()) as client:
        assert not (await client.call_tool("data.ml.list_models", arguments)).is_error
        assert (await client.call_tool("data.ml.lineage", {"entity": ""})).is_error
    (line,) = [x for x in access_log.calls() if "ListArtifacts" in x]
    assert " OK " in line and "sub=mlmesh-ml-mcp " in line
    ok, refused = audit_lines()[-2:]
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    assert ok["subject"] == "agent-7" and ok["tool"] == "data.ml.list_models" and ok["outcome"] == "ok"
    assert ok["args_sha256"] == hashlib.sha256(canonical.encode()).hexdigest() and ok["transport"] == "http"
    assert ok["latency_ms"] > 0 and re.search(rf"rid={ok['request_id']} ", line)   # one id across the mesh
    assert refused["tool"] == "data.ml.lineage" and refused["outcome"] == "INVALID_ARGUMENT"


async def test_run_skill_resolves_the_version_then_runs_it(http_app, agent_token, seeded, access_log):
    """The skill runtime is another room's: until RunSkill lands the registry answers UNIMPLEMENTED, which the
    tool passes on as such; once it lands, the run comes back with its version and steps."""
    async with mcp_http(http_app, agent_token()) as client:
        result = await client.call_tool("data.ml.run_skill", {
            "skill": "multi_horizon_forecast", "inputs": {"prices": [1.0] * 40, "headlines": ["good news"]}})
    calls = [line.split()[0] for line in access_log.calls("/mlmesh.v1.Registry/")]
    assert calls[:2] == ["/mlmesh.v1.Registry/GetSkill", "/mlmesh.v1.Registry/RunSkill"]
    if result.is_error:
        assert result.meta["mlmesh/error"]["code"] in ("UNIMPLEMENTED", "SKILL_FAILED", "FAILED_PRECONDITION",
                                                        "UNAVAILABLE", "NOT_FOUND"), result.content
        assert "Traceback" not in result.content[0].text
    else:
        out = result.structured_content
        assert out["skill"] == "multi_horizon_forecast" and len(out["skill_version"]) == 64
        assert out["run"]["status"] == "succeeded" and out["run"]["steps"]
