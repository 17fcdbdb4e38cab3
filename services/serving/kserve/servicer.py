"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol) over the serving sessions, built
on the generated servicer that tritonclient ships, so tritonclient works against it unchanged.

A model is a session (name = session id, version "1"). ModelInfer turns the request's tensors into the
session's typed calls, which go through its rules and scheduler like any request; the gRPC deadline
and the request's `timeout` parameter (microseconds) bound it, `priority` orders it, and a client that
goes away removes it. Answers always carry raw_output_contents. The kill switch applies: a halted
session is not ready and its inference is UNAVAILABLE; RepositoryModelUnload halts, Load resumes.
ModelStreamInfer serves each message concurrently and reports a failure in that message's
error_message, keeping the stream open.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import metadata as package_metadata

from tritonclient.grpc import service_pb2, service_pb2_grpc

from services.core.errors import InvalidArgument, MLMeshError, NotFound
from services.serving.interfaces.results import CallOptions
from services.serving.kserve import describe
from services.serving.kserve.inference import TensorModels
from services.serving.kserve.tensors import decode_inputs, encode_outputs
from services.serving.sessions.manager import SessionManager
from services.serving.sessions.snapshot import SessionState

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
UNLOAD_REASON = "unloaded through the KServe repository API"
log = logging.getLogger("mlmesh.serving.kserve")


def _version() -> str:
    try:
        return package_metadata.version("mlmesh")
    except package_metadata.PackageNotFoundError:
        return "0"


def _options(request: service_pb2.ModelInferRequest, context) -> CallOptions:
    params = request.parameters
    priority = int(params["priority"].uint64_param or params["priority"].int64_param) if "priority" in params else 0
    timeout = context.time_remaining()
    if "timeout" in params and params["timeout"].int64_param > 0:  # Triton's: microseconds
        own = params["timeout"].int64_param / 1e6
        timeout = own if timeout is None else min(timeout, own)
    return CallOptions(priority, timeout, request.id)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager
        self._models = TensorModels(manager)
        self._server_version = _version()

    async def _infer(self, request: service_pb2.ModelInferRequest, context) -> service_pb2.ModelInferResponse:
        session = self._models.get(request.model_name, request.model_version, field="model_name")
        outputs = await self._models.infer(session, decode_inputs(request), _options(request, context),
                                           [o.name for o in request.outputs])
        response = service_pb2.ModelInferResponse(model_name=session.id, model_version=describe.VERSION,
                                                  id=request.id)
        encode_outputs(response, outputs)
        return response

    # ---- health and metadata ----

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        try:
            session = self._models.get(request.name, request.version)
        except NotFound:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=session.state is SessionState.READY)

    async def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name=describe.SERVER_NAME, version=self._server_version,
                                                  extensions=describe.EXTENSIONS)

    async def ModelMetadata(self, request, context):
        session = self._models.get(request.name, request.version)
        return describe.model_metadata(session, self._models.signature(session))

    async def ModelConfig(self, request, context):
        session = self._models.get(request.name, request.version)
        return describe.model_config(session, self._models.signature(session))

    async def ModelStatistics(self, request, context):
        sessions = [self._models.get(request.name, request.version)] if request.name else self._manager.list()
        return service_pb2.ModelStatisticsResponse(model_stats=[describe.model_statistics(s) for s in sessions])

    # ---- repository: sessions, their halt and resume ----

    async def RepositoryIndex(self, request, context):
        sessions = self._manager.list(SessionState.READY if request.ready else None)
        return service_pb2.RepositoryIndexResponse(models=[describe.index_entry(s) for s in sessions])

    async def RepositoryModelLoad(self, request, context):
        if request.parameters:
            raise InvalidArgument("sessions are deployed with mlmesh.v1.Serving/Deploy; a load only resumes a "
                                  "halted session and takes no config or files", field="parameters")
        await self._manager.resume(self._models.get(request.model_name, field="model_name").id)
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self._manager.halt(self._models.get(request.model_name, field="model_name").id, UNLOAD_REASON)
        return service_pb2.RepositoryModelUnloadResponse()

    # ---- inference ----

    async def ModelInfer(self, request, context):
        return await self._infer(request, context)

    async def ModelStreamInfer(self, request_iterator, context):
        finished: asyncio.Queue = asyncio.Queue()  # done tasks in completion order; None: no more requests
        pending: set[asyncio.Task] = set()

        def done(task: asyncio.Task) -> None:
            pending.discard(task)
            finished.put_nowait(task)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.ensure_future(self._stream_one(request, context))
                    pending.add(task)
                    task.add_done_callback(done)
            finally:
                finished.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            reading = True
            while reading or pending or not finished.empty():
                item = await finished.get()
                if item is None:
                    reading = False
                elif not item.cancelled():
                    yield item.result()
            reader.result()  # a broken request stream ends this one with its error
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _stream_one(self, request, context) -> service_pb2.ModelStreamInferResponse:
        try:
            return service_pb2.ModelStreamInferResponse(infer_response=await self._infer(request, context))
        except MLMeshError as exc:
            message = str(exc)
        except Exception:  # noqa: BLE001 - one message's bug must not end everyone's stream
            log.exception("stream inference of %r failed", request.model_name)
            message = "internal error"
        return service_pb2.ModelStreamInferResponse(
            error_message=message,
            infer_response=service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id))
