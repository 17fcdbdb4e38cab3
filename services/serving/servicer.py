"""The Serving gRPC servicer: proto in, domain call, proto out. Errors are mapped by the interceptor.

`replica` names this service instance in every ServingSession and HaltResult ("serving@host:port");
the composition root sets it once the port is bound. HaltAll also halts the other replicas through the
fan-out (services/serving/fanout.py) unless the request says `this_replica_only`.
"""

from __future__ import annotations

import asyncio

from mlmesh.v1 import serving_pb2_grpc
from services.core.auth.principal import current_principal
from services.serving import converters as cv
from services.serving.fanout import ReplicaFanout
from services.serving.loading.deployer import Deployer
from services.serving.sessions.manager import SessionManager


def _actor() -> str:
    principal = current_principal()
    return principal.subject if principal else "anonymous"


class ServingServicer(serving_pb2_grpc.ServingServicer):
    def __init__(self, manager: SessionManager, deployer: Deployer, *, replica: str = "serving",
                 fanout: ReplicaFanout | None = None) -> None:
        self._manager = manager
        self._deployer = deployer
        self._fanout = fanout
        self.replica = replica

    # ---- sessions ----

    async def Deploy(self, request, context):
        session = await self._deployer.deploy(cv.deploy_spec(request), actor=_actor())
        return cv.session(session.snapshot(), self.replica)

    async def GetSession(self, request, context):
        return cv.session(self._manager.get(request.session_id).snapshot(), self.replica)

    async def ListSessions(self, request, context):
        return cv.sessions(self._manager.snapshots(), self.replica, request.state)

    async def WatchSessions(self, request, context):
        async for snapshots in self._manager.watch(request.interval_s):
            yield cv.sessions(snapshots, self.replica)

    async def HaltSession(self, request, context):
        return cv.session(await self._manager.halt(request.session_id, request.reason,
                                                   cancel_running=request.cancel_running), self.replica)

    async def ResumeSession(self, request, context):
        return cv.session(await self._manager.resume(request.session_id), self.replica)

    async def UndeploySession(self, request, context):
        return cv.session(await self._manager.undeploy(request.session_id), self.replica)

    async def HaltAll(self, request, context):
        # Local sessions stop first (their synchronous halt runs before any await); peers concurrently.
        local = self._manager.halt_all(request.reason, cancel_running=request.cancel_running)
        if request.this_replica_only or self._fanout is None:
            return cv.halt_all(await local, self.replica)
        mine, peers = await asyncio.gather(local, self._fanout.halt_all(
            request.reason, actor=_actor(), cancel_running=request.cancel_running,
            time_remaining=context.time_remaining()))
        return cv.halt_all(mine, self.replica, peers)

    # ---- typed interface calls (the hot path) ----

    async def Predict(self, request, context):
        answer = await self._manager.infer(request.session_id, cv.predict_call(request),
                                           cv.options(request.options, context))
        return cv.predict_response(answer)

    async def Forecast(self, request, context):
        answer = await self._manager.infer(request.session_id, cv.forecast_call(request),
                                           cv.options(request.options, context))
        return cv.forecast_response(answer)

    async def Classify(self, request, context):
        answer = await self._manager.infer(request.session_id, cv.classify_call(request),
                                           cv.options(request.options, context))
        return cv.classify_response(answer)

    async def Segment(self, request, context):
        answer = await self._manager.infer(request.session_id, cv.segment_call(request),
                                           cv.options(request.options, context))
        return cv.segment_response(answer)

    async def Analyze(self, request, context):
        answer = await self._manager.infer(request.session_id, cv.analyze_call(request),
                                           cv.options(request.options, context))
        return cv.analyze_response(answer)
