"""The mlops_assistant agent against a live mesh: registry, puller (with a local Hugging Face hub), compiler,
serving (in-process executor) and the MCP gateway on a real socket, all in this process on 127.0.0.1:0;
the player plays the seed spec's whole plan over a real MCP client session (HTTP), and `mlmesh agent run
--stdio --json` plays it again as a process that spawns the gateway over stdio.

Why the plan pulls one model but compiles and serves another: the puller records where a pulled repo
came from, not an mlmesh architecture spec, and the compiler and serving rebuild a model only from that
spec (they never run code shipped with an artifact). So the plan pulls the hub's MLP and checks its
lineage, then compiles and serves `alpha_bull@prod`, a demo predictor the fixture registers with its spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import torch
import uvicorn
import yaml
from safetensors.torch import save as safetensors_save

from services.compiler.server import build_compiler
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.models.architectures import build_module
from services.core.settings import AuthSettings, MeshSettings, MLSettings, PullerSettings, ServerSettings
from services.mcp_gateway.app import build_gateway
from services.mcp_gateway.http_app import build_http_app
from services.mcp_gateway.settings import GatewaySettings
from services.mesh.agent import templates, transport
from services.mesh.agent.player import Player, StepFailed, ToolRefused
from services.mesh.agent.spec import AgentSpec, PlanStep, load_spec
from services.mesh.demo import data, models as demo
from services.puller.credentials import CredentialResolver
from services.puller.server import build_puller
from services.registry.server import build_registry
from services.serving.server import ServingSettings, build_serving
from tests.puller.hub import LocalHub

pytestmark = pytest.mark.asyncio(loop_scope="module")
REPO = Path(__file__).resolve().parents[2]
HF_REPO = "mlmesh-test/tiny-mlp"
SOURCE = f"hf://{HF_REPO}"


@dataclass
class Mesh:
    url: str                     # the gateway's MCP URL, also its canonical URI
    issuer: TokenIssuer
    audit: Path
    env: dict[str, str]          # for processes: MLMESH_HOME and a topology naming the services above
    commit: str                  # the hub commit the plan pulls

    def token(self, spec: AgentSpec, subject: str | None = None) -> str:
        return self.issuer.mint(subject or spec.name, self.url, spec.scopes)

    def audited(self, subject: str) -> list[str]:
        lines = self.audit.read_text().splitlines() if self.audit.exists() else []
        return [r["tool"] for r in map(json.loads, lines) if r["subject"] == subject]


def _hub_files() -> dict[str, bytes]:
    torch.manual_seed(3)
    module = build_module({"type": "mlp", "layers": [6, 16, 1]})
    config = {"architectures": ["MLP"], "model_type": "mlp", "layers": [6, 16, 1]}
    return {"config.json": json.dumps(config).encode(), "model.safetensors": safetensors_save(module.state_dict())}


async def _register_demo(settings: MeshSettings, registry_address: str, issuer: TokenIssuer) -> None:
    """The skill's four models, trained briefly, saved signed, registered @prod; then the skill published."""
    quiet = lambda n: None  # noqa: E731
    kit = build_artifact_toolkit(settings, LineageBus(), service="test", write_scope=REGISTRY_WRITE,
                                 read_scope=REGISTRY_WRITE)
    client = RegistryClient.connect(registry_address, issuer, subject="test-operator", scopes=ALL_SCOPES)
    token = set_principal(Principal("test-operator", frozenset(ALL_SCOPES), "registry", "t", time.time() + 600))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models crawl when OpenMP threads spin
    try:
        with torch.random.fork_rng():
            torch.manual_seed(11)
            trained = [demo.regime_classifier(torch.Generator().manual_seed(11), 30, quiet),
                       *(demo.alpha_model(r, torch.Generator().manual_seed(12), 20, quiet) for r in data.REGIMES)]
        for model in trained:
            meta = dict(model.metadata)
            saved = await kit.saver.save(model.module.state_dict(), architecture=meta.pop("architecture"),
                                         training_stats=meta.pop("training_stats", None),
                                         feature_names=meta.pop("feature_names", None), metadata=meta)
            await client.register_artifact(saved.manifest, name=model.name, aliases=("prod",),
                                           signature=signature_message(kit.signer, saved.signature))
        await client.publish_skill((REPO / "configs" / "skills" / "regime_aware_alpha.yaml").read_text())
    finally:
        torch.set_num_threads(threads)
        reset_principal(token)
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory):
    root = tmp_path_factory.mktemp("agent-mesh")
    settings = MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mesh.db'}")
    issuer = TokenIssuer.from_settings(settings, AuthSettings())
    hub = LocalHub().start()
    commit = hub.add_commit(HF_REPO, _hub_files())
    apps = []
    async with contextlib.AsyncExitStack() as stack:
        async def start(app):
            apps.append(app)
            stack.push_async_callback(app.stop, 0)
            return f"127.0.0.1:{await app.start('127.0.0.1', 0)}"

        addresses = {"registry": await start(await build_registry(settings, ServerSettings(), AuthSettings()))}
        addresses["serving"] = await start(await build_serving(
            settings, ServerSettings(), AuthSettings(), registry_address=addresses["registry"],
            serving=ServingSettings(executor="in_process", start_triton=False)))
        apps[0].runtime.serving.address = addresses["serving"]   # skill steps run on this serving
        addresses["puller"] = await start(await build_puller(
            settings, ServerSettings(), AuthSettings(), puller=PullerSettings(hf_endpoint=hub.url),
            credentials=CredentialResolver(settings.home / "credentials", environ={}),
            registry_address=addresses["registry"]))
        addresses["compiler"] = await start(await build_compiler(
            settings, ServerSettings(), AuthSettings(), registry_address=addresses["registry"]))
        await _register_demo(settings, addresses["registry"], issuer)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/mcp/ml"
        gateway = build_gateway(mesh=settings, ml=MLSettings(mcp_ml_canonical_uri=url), addresses=addresses,
                                settings=GatewaySettings(audit_file=root / "audit.jsonl"))
        server = uvicorn.Server(uvicorn.Config(build_http_app(gateway, port=port), lifespan="on",
                                               log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)

        services = {name: {"host": "127.0.0.1", "port": int(a.rsplit(":", 1)[1])} for name, a in addresses.items()}
        services["mlmesh-ml-mcp"] = {"host": "127.0.0.1", "port": port, "protocol": "http", "health": "/healthz"}
        (root / "topology.yaml").write_text(yaml.safe_dump({"services": services}))
        env = {"MLMESH_HOME": str(settings.home), "MLMESH_TOPOLOGY_FILE": str(root / "topology.yaml"),
               "MLMESH_MCP_ML_CANONICAL_URI": url, "MLMESH_MCP_AUDIT_FILE": str(root / "audit.jsonl")}
        try:
            yield Mesh(url=url, issuer=issuer, audit=root / "audit.jsonl", env=env, commit=commit)
        finally:
            server.should_exit = True
            await task
            await gateway.close()
            sock.close()
            hub.stop()


@pytest.fixture(scope="module")
def spec() -> AgentSpec:
    return load_spec(REPO / "configs" / "agents" / "mlops_assistant.yaml")


def _inputs() -> dict:
    return {"source": SOURCE}


def _check_transcript(steps: dict[str, dict], mesh: Mesh, rows: list) -> None:
    """Each step's result, as the plan's data flow says it must be."""
    model = steps["pull"]["model"]
    assert model["name"] == HF_REPO and model["source_uri"] == f"{SOURCE}@{mesh.commit}" and model["signed"]
    edges = {(e["source"], e["operation"]) for e in steps["provenance"]["edges"]}
    assert (f"source:{SOURCE}@{mesh.commit}", "pull") in edges
    compiled = steps["compile"]["compiled"]
    assert compiled["target"] == "onnx" and compiled["validation"]["passed"]
    session = steps["serve"]["session"]
    assert session["state"] == "ready" and session["interface"] == "predictor"
    assert session["model"] == f"compiled:{compiled['id']}"
    predictions = steps["predict"]["predictions"]
    assert len(predictions) == len(rows) and all(len(p) == 1 and math.isfinite(p[0]) for p in predictions)
    assert steps["predict"]["meta"]["session_id"] == session["id"]
    run = steps["skill"]["run"]
    assert run["status"] == "succeeded" and steps["skill"]["skill"] == "regime_aware_alpha"
    outputs = run["outputs"]
    alpha = outputs["alpha"][0] if isinstance(outputs["alpha"], list) else outputs["alpha"]
    assert outputs["regime"] == "bull" and 0.5 < outputs["regime_probability"] <= 1.0   # bull-market rows
    # The skill ran the eager alpha_bull on row 0; the plan's session runs its ONNX compilation: they agree.
    assert alpha == pytest.approx(predictions[0][0], rel=1e-4, abs=1e-6)
    assert [s["step_id"] for s in run["steps"]] == ["regime", "alpha"]
    halted = steps["halt"]["session"]
    assert halted["id"] == session["id"] and halted["state"] == "halted"
    assert halted["halt_reason"] == "mlops_assistant plan finished"


async def test_spec_tools_are_offered_by_the_live_gateway(mesh, spec):
    async with transport.http_session(mesh.url, mesh.token(spec)) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(spec.tools) <= set(listed)
    assert {listed[name].meta["mlmesh/scope"] for name in spec.tools} <= set(spec.scopes)


async def test_the_plan_plays_end_to_end_over_http(mesh, spec):
    seen: list[tuple[str, str]] = []

    class Recorder:
        def started(self, step, arguments): seen.append((step.id, "call"))
        def progress(self, step, value, total, message): seen.append((step.id, "progress"))
        def finished(self, record): seen.append((record.id, "error" if record.error else "result"))

    async with transport.http_session(mesh.url, mesh.token(spec)) as client:
        transcript = await Player(spec, client, Recorder()).play(_inputs())
        steps = {s.id: s.result for s in transcript.steps}
        assert list(steps) == ["pull", "provenance", "compile", "serve", "predict", "skill", "halt"]
        rows = spec.inputs["rows"].default
        _check_transcript(steps, mesh, rows)
        session_id = steps["serve"]["session"]["id"]
        # The data flow: the pulled id into provenance, the compiled id into serve, the session into predict/halt.
        by_id = {s.id: s.arguments for s in transcript.steps}
        assert by_id["provenance"]["entity"] == steps["pull"]["model"]["id"]
        assert by_id["predict"] == {"session_id": session_id, "rows": rows}
        assert by_id["skill"]["inputs"]["market_features"] == rows[0]
        assert ("pull", "progress") in seen and ("compile", "progress") in seen and ("skill", "progress") in seen

        later = await client.call_tool("data.ml.predict", {"session_id": session_id, "rows": rows})
        assert later.is_error and later.meta["mlmesh/error"]["code"] == "UNAVAILABLE", later.content
        listed = (await client.call_tool("data.ml.list_serving", {})).structured_content["sessions"]
        assert {s["id"]: s["state"] for s in listed}[session_id] == "halted"
    assert mesh.audited(spec.name)[:7] == [step.tool for step in spec.plan]


async def test_mlmesh_agent_run_plays_over_stdio(mesh, spec):
    env = {**os.environ, **mesh.env, "MLMESH_LOG_LEVEL": "WARNING"}
    env.pop("MLMESH_MCP_TOKEN", None)   # the verb mints one for the spec's scopes
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.mesh", "agent", "run", "--stdio", "--json", "--source", SOURCE,
        cwd=str(REPO), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    transcript = json.loads(stdout)
    assert transcript["ok"] and transcript["agent"] == "mlops_assistant"
    _check_transcript({s["id"]: s["result"] for s in transcript["steps"]}, mesh, spec.inputs["rows"].default)
    progress = {s["id"]: s["progress"] for s in transcript["steps"]}
    assert progress["pull"] and progress["compile"] and progress["skill"], progress   # progress reached the agent


async def test_a_step_with_a_tool_outside_the_list_is_refused_before_any_call(mesh, spec):
    narrowed = spec.model_copy(update={"tools": [t for t in spec.tools if t != "data.ml.halt_all"], "plan": [
        PlanStep(id="models", tool="data.ml.list_models"),
        PlanStep(id="stop", tool="data.ml.halt_all", arguments={"reason": "not allowed"})]})
    async with transport.http_session(mesh.url, mesh.token(spec, "narrow-agent")) as client:
        player = Player(narrowed, client)
        with pytest.raises(ToolRefused, match=r"stop \(data\.ml\.halt_all\)") as refused:
            await player.play(_inputs())
        assert refused.value.field == "plan.stop.tool"
        with pytest.raises(ToolRefused, match="not one of mlops_assistant's tools"):   # the per-call guard too
            await player.call_tool(narrowed.plan[1], {"reason": "not allowed"})
        unknown = narrowed.model_copy(update={"tools": [*narrowed.tools, "data.ml.teleport"], "plan": []})
        with pytest.raises(ToolRefused, match=r"does not offer data\.ml\.teleport"):
            await Player(unknown, client).play(_inputs())
    assert mesh.audited("narrow-agent") == []   # nothing reached a tool, let alone a backend


async def test_a_reference_that_does_not_resolve_stops_the_plan_before_its_call(mesh, spec):
    plan = [PlanStep(id="skills", tool="data.ml.list_skills"),
            PlanStep(id="lookup", tool="data.ml.lineage", arguments={"entity": "${steps.skills.skills.7.name}"})]
    bad = spec.model_copy(update={"plan": plan})
    async with transport.http_session(mesh.url, mesh.token(spec, "template-agent")) as client:
        with pytest.raises(templates.TemplateError, match=r"skills\.skills is a list of 1") as refused:
            await Player(bad, client).play(_inputs())
    assert refused.value.field == "plan.lookup.arguments.entity"
    assert [s.id for s in refused.value.transcript.steps] == ["skills", "lookup"]
    assert refused.value.transcript.steps[1].result is None
    assert mesh.audited("template-agent") == ["data.ml.list_skills"]


async def test_a_tool_error_stops_the_plan_with_the_gateways_words(mesh, spec):
    plan = [PlanStep(id="predict", tool="data.ml.predict", arguments={"session_id": "nope", "rows": [[1.0]]}),
            PlanStep(id="never", tool="data.ml.list_models")]
    async with transport.http_session(mesh.url, mesh.token(spec, "error-agent")) as client:
        with pytest.raises(StepFailed) as failed:
            await Player(spec.model_copy(update={"plan": plan}), client).play(_inputs())
    assert failed.value.error_code == "NOT_FOUND" and failed.value.step == "predict"
    assert mesh.audited("error-agent") == ["data.ml.predict"]
