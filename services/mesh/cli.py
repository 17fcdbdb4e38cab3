"""The `mlmesh` command: run the mesh locally (`up`), check it (`status`), mint tokens, and registry verbs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mlmesh.v1 import registry_pb2
from services.core.auth.policy import ALL_SCOPES
from services.core.errors import InvalidArgument, MLMeshError
from services.mesh import output as out
from services.mesh import compile_cmds, operation_cmds, push_cmd, registry_cmds, serving_cmds
from services.mesh.agent.cli import agent_app
from services.mesh.client import CALL_TIMEOUT_S, MeshClient
from services.mesh.health import SERVING, check_health
from services.mesh.registry_cmds import JsonOpt, all_pages
from services.mesh.supervision_state import read_state, service_summary
from services.mesh.up import run_up

app = typer.Typer(
    name="mlmesh",
    help="Run and operate the mlmesh MLOps mesh: services, artifacts, skills, lineage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(registry_cmds.skills_app, name="skills")
app.add_typer(registry_cmds.artifacts_app, name="artifacts")
app.command("lineage")(registry_cmds.lineage)
app.command("pull")(operation_cmds.pull)
app.command("push")(push_cmd.push)
app.command("compile")(compile_cmds.compile_artifact)
app.command("compilers")(compile_cmds.compilers)
app.add_typer(operation_cmds.operations_app, name="operations")
for _verb in ("serve", "sessions", "predict", "forecast", "classify", "analyze", "segment", "halt", "resume",
              "undeploy"):
    app.command(_verb)(getattr(serving_cmds, _verb))
app.command("halt-all")(serving_cmds.halt_all)
app.add_typer(agent_app, name="agent")


def _client(subject: str = "operator") -> MeshClient:
    """Settings and topology read up front, so a bad variable or topology file is one line, exit 2."""
    try:
        client = MeshClient(subject=subject)
        client.topology  # noqa: B018 - loads and validates it now
    except ValidationError as exc:
        out.fail_settings(exc)
    except MLMeshError as exc:
        out.fail_with(exc)
    return client


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo", help="Train and register the demo models, publish the seed skills.")]
    = False,
    health_timeout: Annotated[float, typer.Option("--health-timeout", min=1, help="Seconds a service has to "
                                                  "become healthy.")] = 60.0,
    metrics: Annotated[bool, typer.Option("--metrics", help="Print where Prometheus scrapes each service "
                                          "(/metrics) and Envoy (/stats/prometheus).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start every service of the topology that exists here, wait for health, and run until Ctrl-C."""
    raise typer.Exit(run_up(_client(), demo=demo, as_json=as_json, health_timeout_s=health_timeout,
                            metrics=metrics))


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Each service of the topology: address and health; for the registry, how many artifacts and skills;
    under a running `mlmesh up`, how often each was restarted and how it last exited."""
    client = _client()
    services = list(client.topology.services.values())
    supervised = read_state(client.mesh.home)   # None: no `mlmesh up` runs on this MLMESH_HOME
    rows: list[dict[str, Any]] = []
    for endpoint in services:
        row: dict[str, Any] = {"service": endpoint.name, "address": endpoint.address,
                               "protocol": endpoint.protocol, "health": check_health(endpoint, timeout_s=2.0)}
        if endpoint.name == "registry" and row["health"] == SERVING:
            row.update(out.run(_registry_counts(client)))
        if supervised is not None and (summary := service_summary(supervised, endpoint.name)):
            row.update(summary)
        rows.append(row)
    envoy = service_summary(supervised or [], "envoy")
    if as_json:
        return out.print_json({"services": rows, **({"envoy": envoy} if envoy else {})})
    colour = {"SERVING": "green", "NOT_SERVING": "yellow", "DOWN": "red"}
    table = out.table("mlmesh", ["service", "address", "health", "artifacts", "skills", "restarts", "last exit",
                                 "up for"], [])
    for row in rows + ([{"service": "envoy", "address": envoy["processes"][0]["address"],
                         "health": envoy["processes"][0]["state"], **envoy}] if envoy else []):
        health = f"[{colour.get(row['health'], 'white')}]{row['health']}[/]"
        table.add_row(row["service"], row["address"], health, str(row.get("artifacts", "-")),
                      str(row.get("skills", "-")), str(row.get("restarts", "-")), row.get("last_exit") or "-",
                      _up_for(row))
    out.console().print(table)


def _up_for(row: dict[str, Any]) -> str:
    if "restarts" not in row:
        return "-"   # not under a supervisor
    if row.get("up_since") is None:
        return "down"
    seconds = int(time.time() - row["up_since"])
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


async def _registry_counts(client: MeshClient) -> dict[str, int]:
    async with client.registry() as registry:
        artifacts = await all_pages(lambda t: registry.ListArtifacts(
            registry_pb2.ListArtifactsRequest(page_size=500, page_token=t), timeout=CALL_TIMEOUT_S), "artifacts")
        skills = await all_pages(lambda t: registry.ListSkills(
            registry_pb2.ListSkillsRequest(page_size=500, page_token=t), timeout=CALL_TIMEOUT_S), "skills")
    return {"artifacts": len(artifacts), "skills": len(skills)}


# What the web console calls (Operations are answered by the registry behind Envoy) and may do there.
CONSOLE_AUDIENCES = ["registry", "puller", "serving"]
CONSOLE_SCOPES = ["registry.read", "skills.run", "operations.read", "puller.pull", "serving.read", "serving.deploy",
                  "serving.halt"]


@app.command()
def token(
    aud: Annotated[list[str] | None, typer.Option(
        "--aud", help="Audience: the service the token is for (registry, ...); repeat for a token several accept.")]
    = None,
    console: Annotated[bool, typer.Option(
        "--console", help=f"A token for the web console: audiences {', '.join(CONSOLE_AUDIENCES)} and the "
        "scopes an operator uses there (unless --aud/--scope say otherwise).")] = False,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="A scope; repeat for more. Default: all.")]
    = None,
    ttl: Annotated[int | None, typer.Option("--ttl", min=1, help="Lifetime in seconds (default: settings).")]
    = None,
    subject: Annotated[str, typer.Option("--subject", help="`sub` of the token.")] = "operator",
    as_json: JsonOpt = False,
) -> None:
    """Print a development token minted with the local issuer key ($MLMESH_HOME/keys/issuer.pem)."""
    scopes = sorted(set(scope)) if scope else sorted(CONSOLE_SCOPES if console else ALL_SCOPES)
    audiences = aud or (CONSOLE_AUDIENCES if console else [])
    client = _client(subject=subject)
    try:
        if not audiences:
            raise InvalidArgument("name an audience with --aud SERVICE (or use --console)", field="aud")
        unknown = [s for s in scopes if s not in ALL_SCOPES]
        if unknown:
            raise InvalidArgument(f"unknown scope {unknown[0]!r}; known: {', '.join(sorted(ALL_SCOPES))}",
                                  field="scope")
        minted = client.mint(audiences if len(audiences) > 1 else audiences[0], scopes, ttl_s=ttl)
    except MLMeshError as exc:
        out.fail_with(exc)
    if as_json:
        lifetime = client.auth.token_ttl_s if ttl is None else ttl
        audience = audiences if len(audiences) > 1 else audiences[0]
        return out.print_json({"token": minted, "audience": audience, "subject": subject, "scopes": scopes,
                               "expires_at": int(time.time()) + lifetime})
    typer.echo(minted)   # plain, so `$(mlmesh token --aud registry)` works


def main() -> None:
    # No traceback for a Ctrl-C outside `up` (which handles its own), e.g. during a slow call.
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None

