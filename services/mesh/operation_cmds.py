"""`mlmesh pull` and `mlmesh operations`: start long work, follow it with a progress bar, cancel on Ctrl-C."""

from __future__ import annotations

import asyncio
from typing import Annotated

import grpc
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mlmesh.v1 import common_pb2, operations_pb2, operations_pb2_grpc, puller_pb2, puller_pb2_grpc
from services.mesh import output as out
from services.mesh.client import CALL_TIMEOUT_S, MeshClient
from services.mesh.registry_cmds import JsonOpt

operations_app = typer.Typer(help="Follow and cancel long-running operations (pulls, compiles).",
                             no_args_is_help=True)
TERMINAL = {operations_pb2.OPERATION_STATE_SUCCEEDED, operations_pb2.OPERATION_STATE_FAILED,
            operations_pb2.OPERATION_STATE_CANCELLED}
State = operations_pb2.OperationState


async def follow(channel: grpc.aio.Channel, operation: operations_pb2.Operation, *, quiet: bool) -> operations_pb2.Operation:
    """Watch `operation` to its end with a progress bar; Ctrl-C cancels it on the server, not just here."""
    stub = operations_pb2_grpc.OperationsStub(channel)
    columns = (TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn())
    with Progress(*columns, console=out.console(), disable=quiet, transient=False) as bar:
        task = bar.add_task("pending", total=None, message="")
        try:
            async for update in stub.WatchOperation(operations_pb2.WatchOperationRequest(id=operation.id)):
                operation = update
                p = update.progress
                bar.update(task, description=p.stage or State.Name(update.state).removeprefix("OPERATION_STATE_").lower(),
                           total=p.total or None, completed=p.done, message=p.message[:60])
                if update.state in TERMINAL:
                    bar.update(task, total=p.total or 1, completed=p.total or 1)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await stub.CancelOperation(operations_pb2.CancelOperationRequest(id=operation.id), timeout=CALL_TIMEOUT_S)
            raise
    return operation


def finish(operation: operations_pb2.Operation, as_json: bool) -> None:
    """Print the outcome; a failed or cancelled operation exits non-zero with its reason on one line."""
    if as_json:
        out.print_json(operation)
    if operation.state != operations_pb2.OPERATION_STATE_SUCCEEDED:
        error = operation.error
        code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
        where = f"{error.field}: " if error.field else ""
        if not as_json:
            out.fail(out.escape(f"{State.Name(operation.state)}: {where}{error.message}"), out.EXIT_CODES.get(code, 1))
        raise typer.Exit(out.EXIT_CODES.get(code, 1))
    if not as_json and operation.result.Is(common_pb2.CompiledArtifact.DESCRIPTOR):
        compiled = common_pb2.CompiledArtifact()
        operation.result.Unpack(compiled)
        v = compiled.validation
        rows = [("id", compiled.id), ("source", compiled.source_artifact_id), ("compiler", compiled.compiler),
                ("target", compiled.target), ("triton platform", compiled.triton_platform),
                ("files", ", ".join(f.path for f in compiled.files)), ("size", compiled.size),
                ("signed", f"yes, key {compiled.signature.key_id}" if compiled.signature.bundle else "no"),
                ("max abs / rel error", f"{v.max_abs_error:.3g} / {v.max_rel_error:.3g}"
                 + (" (over tolerance, warned)" if v.warned else ""))]
        out.console().print(out.table("compiled", ["", ""], rows))
    elif not as_json and operation.result.Is(common_pb2.Artifact.DESCRIPTOR):
        artifact = common_pb2.Artifact()
        operation.result.Unpack(artifact)
        rows = [("id", artifact.id), ("name", artifact.name), ("aliases", ", ".join(artifact.aliases)),
                ("source", artifact.source_uri), ("files", len(artifact.manifest.files)),
                ("size", artifact.total_size)]
        out.console().print(out.table("pulled", ["", ""], rows))


def pull(
    source: Annotated[str, typer.Argument(help="hf://ORG/NAME[@REV] or torchhub://OWNER/REPO[:REF]/ENTRY")],
    name: Annotated[str, typer.Option(help="Registry name (default: the source's name).")] = "",
    alias: Annotated[list[str], typer.Option("--alias", help="Alias to point at the artifact (repeat).")] = [],
    allow_pattern: Annotated[list[str], typer.Option("--allow-pattern", help="HF: only matching files.")] = [],
    allow_pickle: Annotated[bool, typer.Option(help="Operators: accept pickle weights (loaded weights-only).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pull a model through the puller, verified, into the registry; shows progress, Ctrl-C cancels."""

    async def call() -> operations_pb2.Operation:
        async with MeshClient().channel("puller") as channel:
            request = puller_pb2.PullRequest(source=source, name=name, aliases=alias, allow_patterns=allow_pattern,
                                             allow_pickle=allow_pickle)
            started = await puller_pb2_grpc.PullerStub(channel).Pull(request, timeout=CALL_TIMEOUT_S)
            return await follow(channel, started, quiet=as_json)

    finish(out.run(call()), as_json)


@operations_app.command("show")
def operation_show(
    operation_id: Annotated[str, typer.Argument(help="The operation id.")],
    service: Annotated[str, typer.Option(help="Any service that serves Operations; all share one store.")] = "puller",
    as_json: JsonOpt = False,
) -> None:
    """One operation with its state and progress."""

    async def call() -> operations_pb2.Operation:
        async with MeshClient().channel(service) as channel:
            stub = operations_pb2_grpc.OperationsStub(channel)
            return await stub.GetOperation(operations_pb2.GetOperationRequest(id=operation_id), timeout=CALL_TIMEOUT_S)

    operation = out.run(call())
    if as_json:
        return out.print_json(operation)
    p = operation.progress
    rows = [("id", operation.id), ("kind", operation.kind), ("state", State.Name(operation.state)),
            ("stage", p.stage), ("progress", f"{p.done}/{p.total or '?'} {p.unit}"), ("message", p.message),
            ("error", f"{operation.error.code} {operation.error.message}".strip())]
    out.console().print(out.table(None, ["", ""], rows))


@operations_app.command("cancel")
def operation_cancel(
    operation_id: Annotated[str, typer.Argument(help="The operation id.")],
    service: Annotated[str, typer.Option(help="Any service that serves Operations.")] = "puller",
    as_json: JsonOpt = False,
) -> None:
    """Ask the service running an operation to stop it; nothing half-written is kept."""

    async def call() -> operations_pb2.Operation:
        async with MeshClient().channel(service) as channel:
            stub = operations_pb2_grpc.OperationsStub(channel)
            return await stub.CancelOperation(operations_pb2.CancelOperationRequest(id=operation_id),
                                              timeout=CALL_TIMEOUT_S)

    operation = out.run(call())
    if as_json:
        return out.print_json(operation)
    out.console().print(f"{operation.id}: {State.Name(operation.state)}"
                        f"{' (cancel requested)' if operation.cancel_requested else ''}")

