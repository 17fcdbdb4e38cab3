"""`mlmesh agent run`: play an AgentSpec's plan against the MCP gateway, printing each tool call, its
progress and its result (or, with --json, the whole transcript at the end)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from services.core.errors import InvalidArgument, MLMeshError, Unavailable
from services.mesh import output as out
from services.mesh.agent import transport
from services.mesh.agent.player import Player, StepRecord, Transcript
from services.mesh.agent.spec import DEFAULT_SPEC, AgentSpec, PlanStep, load_spec
from services.mesh.client import MeshClient
from services.mesh.registry_cmds import JsonOpt

agent_app = typer.Typer(help="Agents that use mlmesh through the MCP gateway's data.ml.* tools.",
                        no_args_is_help=True)
_RESULT_CHARS = 240


class ConsoleReporter:
    """One line per call and per result, an indented line per progress message."""

    def __init__(self) -> None:
        self.console = out.console()
        self.console.soft_wrap = True   # lines go out whole: the terminal wraps them, not rich at 80 columns

    def started(self, step: PlanStep, arguments: dict) -> None:
        self.console.print(f"[bold]> {step.id}[/] [cyan]{step.tool}[/] {_brief(arguments)}")

    def progress(self, step: PlanStep, value: float, total: float | None, message: str | None) -> None:
        self.console.print(f"    [dim]{out.escape(message or f'{value:g}')}[/]")

    def finished(self, record: StepRecord) -> None:
        took = f"{record.duration_ms / 1000:.1f} s"
        if record.error:
            self.console.print(f"[red]x {record.id}[/] after {took}: {out.escape(record.error)}")
        else:
            self.console.print(f"[green]ok {record.id}[/] in {took}: {_brief(record.result, record.tool)}")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _session(r: dict) -> str:
    s = r["session"]
    return f"session {s['id']} {s['state']} ({s['interface']}, {s['model']})"


# What a person wants to see of each result; the JSON transcript (--json) has all of it.
SUMMARIES = {
    "data.ml.pull": lambda r: f"{r['model']['name']} {r['model']['id']} from {r['model']['source_uri']}",
    "data.ml.lineage": lambda r: f"{len(r['nodes'])} entities; made by: " + ", ".join(sorted(
        {f"{e['operation']} <- {e['source']}" for e in r["edges"]})),
    "data.ml.compile": lambda r: (f"{r['compiled']['id']} ({r['compiled']['triton_platform']}), validation "
                                  f"{'passed' if r['compiled']['validation']['passed'] else 'FAILED'}"),
    "data.ml.serve": _session,
    "data.ml.halt_serving": _session,
    "data.ml.predict": lambda r: f"predictions {_compact(r['predictions'])}",
    "data.ml.run_skill": lambda r: f"run {r['run']['id']} {r['run']['status']}: {_compact(r['run']['outputs'])}",
    "data.ml.halt_all": lambda r: f"{r['halted']} halted",
}


def _brief(value: Any, tool: str = "") -> str:
    try:
        text = SUMMARIES[tool](value) if tool in SUMMARIES else _compact(value)
    except (KeyError, TypeError):   # a result of another shape: show it as it came
        text = _compact(value)
    text = out.shorten_hashes(text)
    return out.escape(text if len(text) <= _RESULT_CHARS else text[:_RESULT_CHARS] + "…")


def _inputs(spec: AgentSpec, pairs: list[str], source: str | None) -> dict[str, Any]:
    """KEY=VALUE pairs (VALUE parsed as JSON when it parses, else taken as text), then --source."""
    given: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{pair!r} is not KEY=VALUE", field="input")
        try:
            given[key] = json.loads(raw)
        except json.JSONDecodeError:
            given[key] = raw
    if source is not None:
        given["source"] = source
    return spec.plan_inputs(given)


async def _play(spec: AgentSpec, endpoint: transport.Endpoint, inputs: dict, quiet: bool) -> Transcript:
    failure: MLMeshError | None = None
    try:
        async with transport.session(endpoint) as client:
            try:
                return await Player(spec, client, None if quiet else ConsoleReporter()).play(inputs)
            except MLMeshError as exc:   # kept out of the SDK's task group, which would wrap it in a group
                failure = exc
    except Exception as exc:   # transport failures (refused connection, 401, a gateway that exits) come wrapped
        if failure is not None:
            raise failure from None
        where = "the stdio gateway" if endpoint.target == transport.STDIO else f"the MCP gateway at {endpoint.target}"
        raise Unavailable(f"{where} did not answer ({_cause(exc)}); is `mlmesh up` running, and is the token "
                          f"for {endpoint.canonical_uri}?") from None
    raise failure


def _cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".strip()


@agent_app.command("run")
def run(
    spec_path: Annotated[Path, typer.Option("--spec", help="The AgentSpec YAML.")] = DEFAULT_SPEC,
    source: Annotated[str | None, typer.Option("--source", help="Plan input `source`: what to pull "
                                               "(hf://ORG/NAME, optionally @REVISION).")] = None,
    input_: Annotated[list[str], typer.Option("--input", help="Plan input KEY=VALUE (JSON values parse; repeat), "
                                              "e.g. --input model=alpha_bear@prod.")] = [],
    stdio: Annotated[bool, typer.Option("--stdio", help="Spawn the gateway over stdio instead of HTTP.")] = False,
    url: Annotated[str | None, typer.Option("--url", help="The gateway's MCP URL (default: mcp_ml_url, "
                                            "else the topology's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Play the spec's plan through the data.ml.* tools, as the agent, with a token for just its scopes
    (MLMESH_MCP_TOKEN when set, else minted by the local issuer)."""
    try:
        spec = load_spec(spec_path)
        inputs = _inputs(spec, input_, source)
        endpoint = transport.agent_endpoint(MeshClient(subject=spec.name), spec.name, spec.scopes, stdio=stdio,
                                            url=url)
    except ValidationError as exc:
        out.fail_settings(exc)
    except MLMeshError as exc:
        out.fail_with(exc)
    try:
        transcript = asyncio.run(_play(spec, endpoint, inputs, quiet=as_json))
    except MLMeshError as exc:
        partial = getattr(exc, "transcript", None)
        if as_json and partial is not None:
            out.print_json(partial.as_dict())
        out.fail_with(exc)
    if as_json:
        return out.print_json(transcript.as_dict())
    out.console().print(f"[bold green]{spec.name}: {len(transcript.steps)} steps done[/]")
