"""`mlmesh push`: a model of one's own, from this disk into the registry, through the public Python client
(`mlmesh.Mesh`) the way any other service would push it, with progress bars for hashing, the upload and
the puller's stages. Ctrl-C during the upload cuts the stream (the puller keeps nothing); during the
operation it cancels the operation on the puller."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

import mlmesh
from mlmesh.v1 import operations_pb2
from services.mesh import output as out
from services.mesh.client import MeshClient
from services.mesh.registry_cmds import JsonOpt

FORMATS = ("auto", "onnx", "xgboost", "lightgbm", "safetensors", "hf")
INTERFACES = ("predictor", "classifier", "forecaster", "segmenter", "analyzer")


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def push(
    path: Annotated[Path, typer.Argument(help="A model file or folder (ONNX, XGBoost/LightGBM file, safetensors, "
                                              "HF snapshot).")],
    name: Annotated[str, typer.Option(help="Registry name.")],
    alias: Annotated[list[str], typer.Option("--alias", help="Alias to move to the new artifact (repeat).")] = [],
    interface: Annotated[str, typer.Option(help=f"One of {', '.join(INTERFACES)}; default: from the model.")] = "",
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "auto",
    feature_names: Annotated[str, typer.Option(help="Comma-separated, one per input column.")] = "",
    labels: Annotated[str, typer.Option(help="Comma-separated class labels, in the model's class order.")] = "",
    window: Annotated[int, typer.Option(help="Forecasters: values per input window.")] = 0,
    reference: Annotated[Path | None, typer.Option(help="CSV or Parquet sample: rule statistics, parity.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Operators: accept pickle weights (loaded weights-only).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a model from disk: streamed in chunks, SHA-256 checked, inspected, signed, registered. Prints its id."""
    for option, value, allowed in (("interface", interface, ("", *INTERFACES)), ("format", fmt, FORMATS)):
        if value not in allowed:
            out.fail(f"{option}: must be one of {', '.join(a for a in allowed if a)}", 2)
    client = MeshClient()
    addresses = {s: client.endpoint(s).address for s in ("registry", "puller", "serving")}
    columns = (TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn())
    with mlmesh.Mesh(addresses, lambda service: client.mint(service)) as mesh, \
            Progress(*columns, console=out.console(), disable=as_json) as bars:
        tasks: dict[str, int] = {}
        operation_ids: list[str] = []

        def on_bytes(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total or None, message="")
            bars.update(tasks[stage], completed=done, total=total or None)

        def on_operation(operation) -> None:
            if not operation_ids:
                operation_ids.append(operation.id)
                tasks["operation"] = bars.add_task("inspect", total=None, message="")
            p = operation.progress
            bars.update(tasks["operation"], description=p.stage or "pending", message=p.message[:60])
            if operation.state == operations_pb2.OPERATION_STATE_SUCCEEDED:
                bars.update(tasks["operation"], total=1, completed=1)

        try:
            artifact = mesh.push(path, name=name, aliases=alias, interface=interface, format=fmt,
                                 feature_names=_names(feature_names), labels=_names(labels), window=window,
                                 reference=reference, allow_pickle=allow_pickle, progress=on_bytes,
                                 on_operation=on_operation)
        except KeyboardInterrupt:
            if operation_ids:
                _cancel(mesh, operation_ids[0])
            raise
        except (FileNotFoundError, ValueError) as exc:
            out.fail(out.escape(f"path: {exc}"), 2)
        except mlmesh.MeshError as exc:
            where = f"{exc.field}: " if exc.field else ""
            out.fail(out.escape(f"{exc.code.name}: {where}{exc.message}"), out.EXIT_CODES.get(exc.code, 1))
    if as_json:
        return out.print_json({"id": artifact.id, "name": artifact.name, "aliases": list(artifact.aliases),
                               "framework": artifact.framework, "format": artifact.format, "size": artifact.size,
                               "interfaces": list(artifact.interfaces), "interface": artifact.interface,
                               "metadata": artifact.metadata})
    conversion = artifact.metadata.get("conversion") or {}
    rows = [("id", artifact.id), ("name", artifact.name), ("aliases", ", ".join(artifact.aliases)),
            ("format", f"{artifact.framework} ({artifact.format})"), ("size", artifact.size),
            ("interfaces", ", ".join(artifact.interfaces)), ("default interface", artifact.interface),
            ("served by", _served_by(artifact.metadata, conversion)),
            ("reference", "statistics recorded" if artifact.metadata.get("training_stats") else "none (rules have "
             "no statistics)")]
    out.console().print(out.table("pushed", ["", ""], rows))
    typer.echo(artifact.id)


def _served_by(metadata: dict, conversion: dict) -> str:
    runtime = (metadata.get("runtime") or {}).get("kind", "")
    if conversion.get("served") == "native":
        return f"{runtime} (not converted: {conversion.get('reason', '')})"
    if conversion:
        return f"{runtime} (converted to ONNX, max abs diff {conversion.get('max_abs_diff', 0):.2g})"
    return runtime or "the model's own format"


def _cancel(mesh: mlmesh.Mesh, operation_id: str) -> None:
    try:
        mesh.stub("operations").CancelOperation(operations_pb2.CancelOperationRequest(id=operation_id),
                                                timeout=10, metadata=mesh.metadata("operations"))
    except grpc.RpcError:
        pass  # the operation may have ended meanwhile
