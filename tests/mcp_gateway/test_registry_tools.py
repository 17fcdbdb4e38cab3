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


async def test_run_skill_resolves_the_version_then_runs_it(http_app, agent_token, seeded, access_log, registry,
                                                           serving, issuer):
    """data.ml.run_skill asks the registry for the skill's current version, then runs exactly that version: its
    steps run on the serving service the registry is given (the test's double, never the committed topology's
    port) and the tool returns the run, its version and every step's outputs."""
    registry.runtime.serving.address = serving.address
    async with mcp_http(http_app, agent_token()) as client:
        result = await client.call_tool("data.ml.run_skill", {
            "skill": "multi_horizon_forecast", "inputs": {"prices": [1.0] * 39 + [2.5], "headlines": ["good news"]}})
    calls = [line.split()[0] for line in access_log.calls("/mlmesh.v1.Registry/")]
    assert calls[:2] == ["/mlmesh.v1.Registry/GetSkill", "/mlmesh.v1.Registry/RunSkill"]
    assert not result.is_error, result.content
    out = result.structured_content
    metadata = (("authorization", f"Bearer {issuer.mint('test-operator', 'registry', ALL_SCOPES)}"),)
    async with grpc.aio.insecure_channel(registry.address) as channel:
        current = await registry_pb2_grpc.RegistryStub(channel).GetSkill(
            registry_pb2.GetSkillRequest(ref="multi_horizon_forecast"), metadata=metadata)
    assert (out["skill"], out["skill_version"]) == ("multi_horizon_forecast", current.version)
    run = out["run"]
    assert run["status"] == "succeeded"
    assert {s["step_id"]: (s["resolved_model"], s["error"]) for s in run["steps"]} == {
        "next_day": (seeded["price_forecaster"], ""), "next_week": (seeded["price_forecaster"], ""),
        "next_month": (seeded["price_forecaster"], ""), "sentiment": (seeded["news_sentiment"], "")}
    # the double forecasts the last price at every step and calls "good news" positive
    assert (run["outputs"]["forecast_1"], run["outputs"]["forecast_5"], run["outputs"]["forecast_20"]) == (
        [2.5], [2.5] * 5, [2.5] * 20)
    assert (run["outputs"]["sentiment"], run["outputs"]["sentiment_score"]) == ("positive", 0.5)
    inferred = [c for c in serving.calls if c.method in ("Forecast", "Analyze")]
    assert sorted(c.method for c in inferred) == ["Analyze", "Forecast", "Forecast", "Forecast"]
    assert {c.principal.subject for c in inferred} == {"registry"}   # the registry's identity, not the agent's
