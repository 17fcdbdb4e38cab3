"""`mlmesh skills|artifacts|lineage`: registry verbs, over gRPC only."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax

from mlmesh.v1 import operations_pb2, operations_pb2_grpc, registry_pb2, registry_pb2_grpc
from services.core.errors import InvalidArgument
from services.mesh import output as out
from services.mesh.client import CALL_TIMEOUT_S, MeshClient

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

skills_app = typer.Typer(help="Publish and inspect hash-locked skills.", no_args_is_help=True)
artifacts_app = typer.Typer(help="Inspect registered model artifacts.", no_args_is_help=True)


async def all_pages(fetch: Callable[[str], Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paged List call (the server caps a page; scripts want everything)."""
    items, token = [], ""
    while True:
        reply = await fetch(token)
        items.extend(getattr(reply, field))
        token = reply.next_page_token
        if not token:
            return items


def lock_table(lock: dict[str, str]) -> Any:
    return out.table("lock", ["model reference", "resolved artifact"], sorted(lock.items()))


# ---- skills ----

@skills_app.command("publish")
def skills_publish(
    file: Annotated[Path, typer.Argument(help="MLSkillSpec YAML (or JSON) file.", exists=True, dir_okay=False)],
    expect: Annotated[str, typer.Option("--expect", help="Refuse unless the spec hashes to this version.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Publish a skill; the same content always gives the same version."""
    try:
        spec_yaml = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.fail(f"cannot read {file}: {exc}", 2)

    async def call() -> registry_pb2.PublishSkillResponse:
        async with MeshClient().registry() as registry:
            request = registry_pb2.PublishSkillRequest(spec_yaml=spec_yaml, expected_version=expect)
            return await registry.PublishSkill(request, timeout=CALL_TIMEOUT_S)

    reply = out.run(call())
    if as_json:
        return out.print_json(reply)
    v = reply.version
    state = "[green]created[/]" if reply.created else "[yellow]already published[/]"
    con = out.console()
    # soft_wrap: a 64-digit version must stay on one line, whole, for copy and paste.
    con.print(f"[bold]{v.name}[/] version [cyan]{v.version}[/] (#{v.number}) {state}", soft_wrap=True)
    con.print(lock_table(dict(v.lock)))


@skills_app.command("list")
def skills_list(as_json: JsonOpt = False) -> None:
    """Every skill with its latest version."""

    async def call() -> list[registry_pb2.Skill]:
        async with MeshClient().registry() as registry:
            return await all_pages(lambda t: registry.ListSkills(
                registry_pb2.ListSkillsRequest(page_size=500, page_token=t), timeout=CALL_TIMEOUT_S), "skills")

    skills = out.run(call())
    if as_json:
        return out.print_json({"skills": [out.to_dict(s) for s in skills]})
    rows = [(s.name, out.short(s.latest_version), s.version_count, out.when(s, "updated_at"),
             textwrap.shorten(s.description, 60)) for s in skills]
    columns = ["name", ("latest", {"no_wrap": True}), "versions", "updated", "description"]
    out.console().print(out.table("skills", columns, rows))


@skills_app.command("show")
def skills_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest, NAME@<number> or NAME@<version prefix>.")],
    as_json: JsonOpt = False,
) -> None:
    """One skill version: its spec, its lock, and every version of the skill."""

    async def call() -> tuple[registry_pb2.SkillVersion, list[registry_pb2.SkillVersion]]:
        async with MeshClient().registry() as registry:
            version = await registry.GetSkill(registry_pb2.GetSkillRequest(ref=ref), timeout=CALL_TIMEOUT_S)
            versions = await all_pages(lambda t: registry.ListSkillVersions(
                registry_pb2.ListSkillVersionsRequest(name=version.name, page_size=500, page_token=t),
                timeout=CALL_TIMEOUT_S), "versions")
            return version, versions

    version, versions = out.run(call())
    if as_json:
        return out.print_json({"version": out.to_dict(version), "versions": [out.to_dict(v) for v in versions]})
    con = out.console()
    con.print(f"[bold]{version.name}[/] version [cyan]{version.version}[/] (#{version.number}) "
              f"by {version.created_by or '-'} at {out.when(version, 'created_at')}", soft_wrap=True)
    spec_text = version.spec_yaml or json.dumps(out.to_dict(version.spec), indent=2)
    con.print(Syntax(spec_text.rstrip(), "yaml", theme="ansi_dark", background_color="default", word_wrap=True))
    con.print(lock_table(dict(version.lock)))
    rows = [(v.number, v.version, v.created_by, out.when(v, "created_at")) for v in versions]
    con.print(out.table("versions", ["#", "version", "by", "created"], rows))


def _skill_inputs(pairs: list[str]) -> dict[str, Any]:
    """KEY=JSON pairs (`--input prices='[101.2, 100.8]'`); a bare word is a string (`--input regime=bull`)."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or key in inputs:
            raise InvalidArgument(f"{pair!r} is not KEY=JSON, or KEY is given twice", field="input")
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            if raw.lstrip()[:1] in ("[", "{", '"'):  # meant as JSON: say where it breaks, never send a string
                raise InvalidArgument(f"is not valid JSON: {exc}", field=f"inputs.{key}") from None
            inputs[key] = raw
    return inputs


async def _follow_steps(channel: Any, operation: operations_pb2.Operation, *, quiet: bool) -> operations_pb2.Operation:
    """Watch a skill run step by step; Ctrl-C cancels it on the registry, not just here."""
    stub = operations_pb2_grpc.OperationsStub(channel)
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn())
    with Progress(*columns, console=out.console(), disable=quiet, transient=False) as bar:
        task = bar.add_task("pending", total=None, message="")
        try:
            async for operation in stub.WatchOperation(operations_pb2.WatchOperationRequest(id=operation.id)):
                p = operation.progress
                bar.update(task, description=p.stage or "pending", total=p.total or None, completed=p.done,
                           message=p.message[:60])
        except (asyncio.CancelledError, KeyboardInterrupt):
            await stub.CancelOperation(operations_pb2.CancelOperationRequest(id=operation.id), timeout=CALL_TIMEOUT_S)
            raise
    return operation


def _compact(value: Any, width: int) -> str:
    """A value on one line for a table: strings bare, numbers to 6 significant digits, cut at `width`."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return textwrap.shorten(re.sub(r"-?\d+\.\d{7,}(?:e-?\d+)?", lambda m: f"{float(m[0]):.6g}", text), width,
                            placeholder=" …")


def _print_run(run: registry_pb2.SkillRun) -> None:
    """The outputs, then each step (its model as written; --json has the resolved hashes and timings)."""
    con = out.console()
    status = registry_pb2.SkillRunStatus.Name(run.status).removeprefix("SKILL_RUN_STATUS_")
    con.print(f"[bold]{run.skill_name}[/]@{run.skill_version[:12]} run {run.id}: {status} in "
              f"{run.duration_ms:.0f} ms{' (aliases re-resolved)' if run.reresolved_aliases else ''}", soft_wrap=True)
    if outputs := out.to_dict(run.outputs):
        con.print(out.table("outputs", ["output", "value"], [(k, _compact(v, 60)) for k, v in outputs.items()]))
    rows = [(s.step_id, s.model, f"{s.duration_ms:.0f}", s.error or _compact(out.to_dict(s.output), 40))
            for s in run.steps]
    con.print(out.table("steps", ["step", "model", "ms", "output / error"], rows))


@skills_app.command("run")
def skills_run(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (latest, a number or a version prefix).")],
    inputs: Annotated[list[str], typer.Option("--input", help="A skill input KEY=JSON (repeat).")] = [],
    experiment: Annotated[str, typer.Option("--experiment", help="File the run under this experiment id.")] = "",
    test: Annotated[str, typer.Option("--test", help="File the run under this test id.")] = "",
    reresolve: Annotated[bool, typer.Option("--reresolve", help="Resolve model aliases now instead of the "
                                            "version's lock (recorded in the run).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a hash-locked skill version on serving; shows each step, Ctrl-C cancels the run."""
    from services.mesh.operation_cmds import finish  # operation_cmds imports this module

    async def call() -> tuple[operations_pb2.Operation, registry_pb2.SkillRun | None]:
        request = registry_pb2.RunSkillRequest(ref=ref, experiment_id=experiment, test_id=test,
                                               reresolve_aliases=reresolve)
        request.inputs.update(_skill_inputs(inputs))
        async with MeshClient().channel("registry") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            started = await registry.RunSkill(request, timeout=CALL_TIMEOUT_S)
            final = await _follow_steps(channel, started, quiet=as_json)
            if as_json or "run_id" not in final.request:
                return final, None
            # The ledger has the run, also when it failed or was cancelled (then with every step that ran).
            request = registry_pb2.GetSkillRunRequest(id=final.request["run_id"])
            return final, await registry.GetSkillRun(request, timeout=CALL_TIMEOUT_S)

    operation, run = out.run(call())
    if run is not None:
        _print_run(run)
    finish(operation, as_json)


# ---- artifacts ----

@artifacts_app.command("list")
def artifacts_list(
    name: Annotated[str, typer.Option("--name", help="Only artifacts with this name.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Registered artifacts, newest first."""

    async def call() -> list[Any]:
        async with MeshClient().registry() as registry:
            return await all_pages(lambda t: registry.ListArtifacts(
                registry_pb2.ListArtifactsRequest(name=name, page_size=500, page_token=t),
                timeout=CALL_TIMEOUT_S), "artifacts")

    artifacts = out.run(call())
    if as_json:
        return out.print_json({"artifacts": [out.to_dict(a) for a in artifacts]})
    rows = [(out.short(a.id), a.name, out.alias_names(a.aliases), f"{a.manifest.framework}/{a.manifest.format}",
             out.human_size(a.total_size), out.when(a, "created_at")) for a in artifacts]
    columns = [("id", {"no_wrap": True}), "name", "aliases", "format", ("size", {"no_wrap": True}), "created"]
    out.console().print(out.table("artifacts", columns, rows))


@artifacts_app.command("show")
def artifacts_show(
    ref: Annotated[str, typer.Argument(help="sha256:<hex>, NAME@ALIAS or NAME (= NAME@latest).")],
    as_json: JsonOpt = False,
) -> None:
    """One artifact: its manifest, files and metadata."""

    async def call() -> Any:
        async with MeshClient().registry() as registry:
            return await registry.GetArtifact(registry_pb2.GetArtifactRequest(ref=ref), timeout=CALL_TIMEOUT_S)

    artifact = out.run(call())
    if as_json:
        return out.print_json(artifact)
    con = out.console()
    m = artifact.manifest
    con.print(f"[bold]{artifact.id}[/]", soft_wrap=True)
    con.print(out.table(None, ["field", "value"], [
        ("name", artifact.name), ("aliases", out.alias_names(artifact.aliases)), ("framework", m.framework),
        ("format", m.format), ("size", out.human_size(artifact.total_size)), ("source", artifact.source_uri),
        ("created", f"{out.when(artifact, 'created_at')} by {artifact.created_by or '-'}"),
        ("signed", "yes" if artifact.signature.bundle else "no"),
    ]))
    con.print(out.table("files", ["path", "sha256", "size", "media type"],
                        [(f.path, f.sha256, f.size, f.media_type) for f in m.files]))
    metadata = out.to_dict(m.metadata)
    if metadata:
        con.print(Syntax(json.dumps(metadata, indent=2, sort_keys=True), "json", theme="ansi_dark",
                         background_color="default", word_wrap=True))


# ---- lineage ----

class Direction(str, Enum):
    up = "up"
    down = "down"
    both = "both"


DIRECTIONS = {
    Direction.up: registry_pb2.LINEAGE_DIRECTION_UPSTREAM,
    Direction.down: registry_pb2.LINEAGE_DIRECTION_DOWNSTREAM,
    Direction.both: registry_pb2.LINEAGE_DIRECTION_BOTH,
}


def lineage(
    entity: Annotated[str, typer.Argument(help="A typed ref (artifact:sha256:<hex>, skill:NAME@VERSION, ...), "
                                          "a bare sha256:<hex>, or an artifact NAME[@ALIAS].")],
    direction: Annotated[Direction, typer.Option("--direction", help="Upstream, downstream or both.")] = Direction.both,
    depth: Annotated[int, typer.Option("--depth", min=0, max=50, help="Hops to follow; 0 = server default.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """What an entity was made from and what was made from it."""

    async def call() -> registry_pb2.LineageGraph:
        if not entity.strip():
            raise InvalidArgument("is required", field="entity")
        async with MeshClient().registry() as registry:
            root = entity
            if ":" not in entity:
                # NAME or NAME@ALIAS: the artifact it names now (typed refs and sha256:<hex> go as they are).
                artifact = await registry.GetArtifact(registry_pb2.GetArtifactRequest(ref=entity),
                                                      timeout=CALL_TIMEOUT_S)
                root = f"artifact:{artifact.id}"
            request = registry_pb2.GetLineageRequest(entity=root, direction=DIRECTIONS[direction], depth=depth)
            return await registry.GetLineage(request, timeout=CALL_TIMEOUT_S)

    graph = out.run(call())
    if as_json:
        return out.print_json(graph)
    con = out.console()
    con.print(f"lineage of [bold]{out.escape(graph.root)}[/] ({direction.value})", soft_wrap=True)
    con.print(out.table("nodes", ["kind", "entity"], [(n.kind, out.shorten_hashes(n.entity)) for n in graph.nodes]))
    events = {e.id: e for e in graph.events}
    rows = [(out.shorten_hashes(e.source), "→", out.shorten_hashes(e.target), e.operation,
             events[e.event_id].actor if e.event_id in events else "") for e in graph.edges]
    con.print(out.table("edges", ["input", "", "output", "operation", "actor"], rows))
