"""The Compiler gRPC servicer: proto in, domain call, proto out. Errors are mapped by the interceptor."""

from __future__ import annotations

from mlmesh.v1 import compiler_pb2, compiler_pb2_grpc, operations_pb2
from services.compiler import converters as cv
from services.compiler.compilers.registry import CompilerCatalog
from services.compiler.pipeline import CompilePipeline
from services.core.auth.principal import current_principal


class CompilerServicer(compiler_pb2_grpc.CompilerServicer):
    def __init__(self, pipeline: CompilePipeline, catalog: CompilerCatalog) -> None:
        self._pipeline = pipeline
        self._catalog = catalog

    async def Compile(self, request, context) -> operations_pb2.Operation:
        principal = current_principal()
        return await self._pipeline.start(cv.compile_spec(request), actor=principal.subject if principal else "anonymous")

    async def ListCompilers(self, request, context) -> compiler_pb2.ListCompilersResponse:
        return compiler_pb2.ListCompilersResponse(compilers=[cv.compiler_info(c) for c in self._catalog.compilers])
