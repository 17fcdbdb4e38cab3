"""The Puller gRPC servicer: proto in, domain call, proto out. Errors are mapped by the interceptor."""

from __future__ import annotations

from mlmesh.v1 import operations_pb2, puller_pb2_grpc
from services.core.auth.principal import current_principal
from services.puller import converters as cv
from services.puller.pipeline import PullPipeline


class PullerServicer(puller_pb2_grpc.PullerServicer):
    def __init__(self, pipeline: PullPipeline) -> None:
        self._pipeline = pipeline

    async def Pull(self, request, context) -> operations_pb2.Operation:
        principal = current_principal()
        return await self._pipeline.start(cv.pull_spec(request), actor=principal.subject if principal else "anonymous")
