"""The Puller gRPC servicer: proto in, domain call, proto out. Errors are mapped by the interceptor."""

from __future__ import annotations

from mlmesh.v1 import operations_pb2, puller_pb2_grpc
from services.core.auth.principal import current_principal
from services.puller import converters as cv
from services.puller.pipeline import PullPipeline
from services.puller.push import PushPipeline


def _actor() -> str:
    principal = current_principal()
    return principal.subject if principal else "anonymous"


class PullerServicer(puller_pb2_grpc.PullerServicer):
    def __init__(self, pipeline: PullPipeline, push: PushPipeline) -> None:
        self._pipeline = pipeline
        self._push = push

    async def Pull(self, request, context) -> operations_pb2.Operation:
        return await self._pipeline.start(cv.pull_spec(request), actor=_actor())

    async def Push(self, request_iterator, context) -> operations_pb2.Operation:
        spec, chunks = await cv.push_parts(request_iterator)
        return await self._push.receive(spec, chunks, actor=_actor())
