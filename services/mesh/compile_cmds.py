"""`mlmesh compile` and `mlmesh compilers`: compile an artifact with a progress bar; list the compilers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from google.protobuf import struct_pb2

from mlmesh.v1 import compiler_pb2, compiler_pb2_grpc, operations_pb2
from services.core.errors import InvalidArgument
from services.mesh import output as out
from services.mesh.client import CALL_TIMEOUT_S, MeshClient
from services.mesh.operation_cmds import finish, follow
from services.mesh.registry_cmds import JsonOpt


def _kwargs(pairs: list[str]) -> struct_pb2.Struct:
    """KEY=VALUE pairs; a VALUE that parses as JSON (numbers, booleans, lists) is taken as that."""
    kwargs = struct_pb2.Struct()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{pair!r} is not KEY=VALUE", field="kwarg")
        try:
            kwargs.update({key: json.loads(raw)})
        except json.JSONDecodeError:
            kwargs.update({key: raw})
    return kwargs


def compile_artifact(
    artifact: Annotated[str, typer.Argument(help="Artifact ref: sha256:<hex>, name@alias or name.")],
    target: Annotated[str, typer.Option(help="onnx, torchscript, pt2, int8, fp16, bf16 or tensorrt.")] = "onnx",
    kwarg: Annotated[list[str], typer.Option("--kwarg", help="Compiler parameter KEY=VALUE (repeat).")] = [],
    max_batch_size: Annotated[int, typer.Option(help="Dynamic batch upper bound (0 = the compiler's default).")] = 0,
    tolerance: Annotated[float, typer.Option(help="Absolute tolerance against the eager model (0 = default).")] = 0.0,
    warn_only: Annotated[bool, typer.Option(help="Record and warn instead of failing over tolerance.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compile an artifact; the output is validated against the eager model, stored and registered."""

    async def call() -> operations_pb2.Operation:
        request = compiler_pb2.CompileRequest(
            artifact=artifact, target=target, kwargs=_kwargs(kwarg), max_batch_size=max_batch_size,
            validation=compiler_pb2.ValidationPolicy(tolerance_abs=tolerance, warn_only=warn_only),
        )
        async with MeshClient().channel("compiler") as channel:
            started = await compiler_pb2_grpc.CompilerStub(channel).Compile(request, timeout=CALL_TIMEOUT_S)
            return await follow(channel, started, quiet=as_json)

    finish(out.run(call()), as_json)


def compilers(as_json: JsonOpt = False) -> None:
    """Every compiler with its targets, and whether it is available here (and why not)."""

    async def call() -> compiler_pb2.ListCompilersResponse:
        async with MeshClient().channel("compiler") as channel:
            stub = compiler_pb2_grpc.CompilerStub(channel)
            return await stub.ListCompilers(compiler_pb2.ListCompilersRequest(), timeout=CALL_TIMEOUT_S)

    reply = out.run(call())
    if as_json:
        return out.print_json(reply)
    rows = [(c.alias, ", ".join(c.targets), "yes" if c.available else "no", c.reason,
             ", ".join(f"{k} {v}" for k, v in sorted(c.tool_versions.items()))) for c in reply.compilers]
    out.console().print(out.table("compilers", ["compiler", "targets", "available", "why not", "tools"], rows))
