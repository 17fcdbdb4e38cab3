"""The AgentSpec and its template syntax without a mesh: the seed spec against the gateway's catalog, what
loading refuses (and where it says the problem is), how references render, the player's refusal before
any call, and `mlmesh agent run`'s exits for a bad spec, a bad input and an unreachable gateway."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from services.core.errors import InvalidArgument
from services.mcp_gateway.tools import all_tools
from services.mesh.agent import templates
from services.mesh.agent.player import Player, ToolRefused
from services.mesh.agent.spec import DEFAULT_SPEC, load_spec, parse_spec
from services.mesh.cli import app

SEED = yaml.safe_load(DEFAULT_SPEC.read_text())


def test_the_seed_spec_names_gateway_tools_and_just_their_scopes():
    spec = load_spec()
    catalog = {t.name: t.scope for t in all_tools()}
    assert spec.name == "mlops_assistant" and "data.ml." in spec.instructions
    assert set(spec.tools) <= set(catalog)
    assert set(spec.scopes) == {catalog[t] for t in spec.tools}   # no scope the tools do not need
    assert [(s.id, s.tool) for s in spec.plan] == [
        ("pull", "data.ml.pull"), ("provenance", "data.ml.lineage"), ("compile", "data.ml.compile"),
        ("serve", "data.ml.serve"), ("predict", "data.ml.predict"), ("skill", "data.ml.run_skill"),
        ("halt", "data.ml.halt_serving")]
    assert not spec.forbidden_steps()
    assert {"data.ml.halt_serving", "data.ml.halt_all"} <= set(spec.tools)


def _with(change) -> dict:
    data = copy.deepcopy(SEED)
    change(data)
    return data


def _arg(step: int, name: str, value):
    return lambda d: d["plan"][step]["arguments"].__setitem__(name, value)


@pytest.mark.parametrize("change, field, needle", [
    (_arg(2, "artifact", "${steps.serve.session.id}"), "plan.compile.arguments.artifact",
     "no step 'serve' has run before this one"),
    (_arg(1, "entity", "${steps.fetch.model.id}"), "plan.provenance.arguments.entity", "no step 'fetch'"),
    (_arg(0, "source", "${inputs.repo}"), "plan.pull.arguments.source", "declares no input 'repo'"),
    (_arg(0, "source", "${inputs.source"), "plan.pull.arguments.source", "unterminated"),
    (_arg(0, "source", "${settings.token}"), "plan.pull.arguments.source", "is not a reference"),
    (_arg(0, "source", "${inputs..source}"), "plan.pull.arguments.source", "is not a reference"),
    (_arg(0, "allow_patterns", ["${steps.${inputs.source}}"]), "plan.pull.arguments.allow_patterns[0]", "nested"),
    (lambda d: d["plan"][1].__setitem__("id", "pull"), "spec", "step id 'pull' is used twice"),
    (lambda d: d["tools"].append("registry.ListArtifacts"), "tools.16", "should match pattern"),
    (lambda d: d["tools"].append("data.ml.predict"), "tools", "listed twice: data.ml.predict"),
    (lambda d: d["scopes"].append("root"), "scopes", "unknown scope(s) root"),
    (lambda d: d.__setitem__("model", "gpt"), "model", "Extra inputs are not permitted"),
    (lambda d: d.pop("instructions"), "instructions", "Field required"),
])
def test_loading_refuses_with_the_place_of_the_problem(change, field, needle):
    with pytest.raises(InvalidArgument) as refused:
        parse_spec(_with(change))
    assert refused.value.field == field and needle in refused.value.message, refused.value


def test_a_forbidden_step_loads_but_the_player_refuses_it_before_any_call():
    spec = parse_spec(_with(lambda d: d["tools"].remove("data.ml.halt_serving")))
    calls = []

    class Client:
        async def list_tools(self, *, cursor=None):
            calls.append("tools/list")
            return SimpleNamespace(tools=[], next_cursor=None)

        async def call_tool(self, name, arguments=None, *, progress_callback=None):
            calls.append(name)

    with pytest.raises(ToolRefused, match=r"halt \(data\.ml\.halt_serving\)"):
        asyncio.run(Player(spec, Client()).play({"source": "hf://a/b"}))
    assert calls == []


CONTEXT = {"inputs": {"rows": [[1.0, 2.0]], "name": "m", "flag": True},
           "steps": {"serve": {"session": {"id": "s-1", "stats": {"n": 3}}}}}


@pytest.mark.parametrize("value, expected", [
    ("${inputs.rows}", [[1.0, 2.0]]),                        # a whole-value reference keeps its type
    ("${inputs.rows.0.1}", 2.0),
    ("compiled:${steps.serve.session.id}", "compiled:s-1"),  # embedded: written into the text
    ("${inputs.name}@${steps.serve.session.stats.n}", "m@3"),
    ({"a": ["${inputs.name}", 5]}, {"a": ["m", 5]}),
    ("no references", "no references"),
])
def test_render(value, expected):
    assert templates.render(value, "plan.x.arguments", CONTEXT) == expected


@pytest.mark.parametrize("value, needle", [
    ("${steps.serve.session.idx}", "steps.serve.session has no 'idx' (it has: id, stats)"),
    ("${inputs.rows.3}", "inputs.rows is a list of 1, and '3' is not an index into it"),
    ("${inputs.name.first}", "inputs.name is a str, not an object or a list"),
    ("rows=${inputs.rows}", "only a string or a number can be written inside text"),
    ("on=${inputs.flag}", "only a string or a number"),
])
def test_render_refuses_what_does_not_resolve(value, needle):
    with pytest.raises(templates.TemplateError) as refused:
        templates.render({"arg": value}, "plan.x.arguments", CONTEXT)
    assert needle in refused.value.message and refused.value.field == "plan.x.arguments.arg"


def test_plan_inputs_overlay_defaults_and_refuse_unknown_or_missing():
    spec = parse_spec(_with(lambda d: d["inputs"]["source"].pop("default")))
    assert spec.plan_inputs({"source": "hf://a/b"})["model"] == "alpha_bull@prod"
    with pytest.raises(InvalidArgument, match="is required") as missing:
        spec.plan_inputs({})
    assert missing.value.field == "inputs.source"
    with pytest.raises(InvalidArgument) as unknown:
        spec.plan_inputs({"source": "hf://a/b", "sorce": "x"})
    assert unknown.value.field == "inputs.sorce"


@pytest.fixture
def cli(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("MLMESH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLMESH_MCP_TOKEN", raising=False)
    return CliRunner()


def test_cli_exits_2_for_a_bad_spec_or_input(cli, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(_arg(3, "model", "compiled:${steps.compiled.id}"))))
    result = cli.invoke(app, ["agent", "run", "--spec", str(bad)])
    assert result.exit_code == 2 and "no step 'compiled'" in result.output, result.output
    result = cli.invoke(app, ["agent", "run", "--input", "nonsense=1"])
    assert result.exit_code == 2 and "inputs.nonsense" in result.output, result.output


def test_cli_says_when_the_gateway_does_not_answer(cli):
    result = cli.invoke(app, ["agent", "run", "--url", "http://127.0.0.1:9/mcp/ml", "--json"])
    assert result.exit_code == 1 and "the MCP gateway at http://127.0.0.1:9/mcp/ml did not answer" in result.output
