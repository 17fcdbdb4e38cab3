"""`ServingClient`: a typed async client of Serving, with a mesh token for audience "serving".

Plain Python values in (feature rows as lists of numbers or name -> value mappings, series, texts), plain
frozen results out, so a caller never touches the protos. Every call re-raises what serving answered as
the domain error it started as (field kept).

Session policy of `find_or_deploy(artifact_id, interface)`, in this order:
1. a READY session serving exactly that artifact id with that interface is reused (the oldest, so
   concurrent callers agree on one);
2. a HALTED session of that artifact (any interface) refuses with UNAVAILABLE naming the session: a halt
   is the kill switch, and a caller must never route around it by deploying the same model again;
3. a session of that artifact and interface still DEPLOYING is waited for;
4. otherwise one is deployed, pinned by the artifact id, executor auto, the default rule pack, under the
   id `auto-<interface>-<hex prefix>`; it stays up afterwards for the next caller (halt or undeploy it
   like any other session). Concurrent calls for one (artifact, interface) in this process share one
   deploy; a concurrent deploy elsewhere shows up as ALREADY_EXISTS on that id and is waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

# The reply types are the public client's (one definition for the mesh and the services that call it).
from mlmesh.results import Analysis, Classification, Prediction, Segment, Segmentation
from mlmesh.v1 import common_pb2, serving_pb2, serving_pb2_grpc
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer
from services.core.errors import AlreadyExists, DeadlineExceeded, InvalidArgument, Unavailable
from services.core.grpc.client import connect, raise_domain_error

AUDIENCE = "serving"
DEFAULT_SCOPES = (policy.SERVING_READ, policy.SERVING_DEPLOY, policy.SERVING_INFER)
INTERFACES = {"predictor": common_pb2.INTERFACE_KIND_PREDICTOR, "forecaster": common_pb2.INTERFACE_KIND_FORECASTER,
              "classifier": common_pb2.INTERFACE_KIND_CLASSIFIER, "segmenter": common_pb2.INTERFACE_KIND_SEGMENTER,
              "analyzer": common_pb2.INTERFACE_KIND_ANALYZER}
EXECUTORS = {"auto": serving_pb2.EXECUTOR_KIND_UNSPECIFIED, "triton": serving_pb2.EXECUTOR_KIND_TRITON,
             "in_process": serving_pb2.EXECUTOR_KIND_IN_PROCESS}
READY, HALTED, DEPLOYING = (serving_pb2.SESSION_STATE_READY, serving_pb2.SESSION_STATE_HALTED,
                            serving_pb2.SESSION_STATE_DEPLOYING)
T = TypeVar("T")
Row = Sequence[float] | Mapping[str, float]


def session_id_for(artifact_id: str, interface: str) -> str:
    return f"auto-{interface}-{artifact_id.removeprefix('sha256:')[:16]}"


def _rows(features: Row | Sequence[Row]) -> list[serving_pb2.FeatureRow]:
    """One row (numbers or a name -> value mapping) or a list of rows, as FeatureRow messages."""
    if isinstance(features, Mapping) or (features and not isinstance(features[0], Sequence | Mapping)):
        features = [features]
    return [serving_pb2.FeatureRow(named=dict(r)) if isinstance(r, Mapping) else serving_pb2.FeatureRow(values=r)
            for r in features]


def _interface(interface: str) -> int:
    try:
        return INTERFACES[interface]
    except KeyError:
        raise InvalidArgument(f"unknown interface {interface!r}; known: {list(INTERFACES)}", field="interface") \
            from None


class ServingClient:
    """Calls Serving over `channel` (made by `connect`, so each call carries a mesh token)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 30.0, deploy_timeout_s: float = 300.0) -> None:
        self._channel = channel
        self._stub = serving_pb2_grpc.ServingStub(channel)
        self._timeout_s = timeout_s
        self._deploy_timeout_s = deploy_timeout_s
        self._deploys: dict[tuple[str, str], asyncio.Lock] = {}  # one deploy per (artifact, interface) at a time

    @classmethod
    def connect(cls, address: str, issuer: TokenIssuer, *, subject: str, scopes: Iterable[str] = DEFAULT_SCOPES,
                timeout_s: float = 30.0, deploy_timeout_s: float = 300.0) -> ServingClient:
        """A client with its own channel; call inside the running loop, `close()` when done."""
        return cls(connect(address, AUDIENCE, issuer, subject, scopes), timeout_s=timeout_s,
                   deploy_timeout_s=deploy_timeout_s)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, timeout_s: float | None = None) -> T:
        try:
            return await method(request, timeout=timeout_s or self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_domain_error(exc)

    # ---- sessions ----

    async def list_sessions(self, state: int = 0) -> list[serving_pb2.ServingSession]:
        reply = await self._call(self._stub.ListSessions, serving_pb2.ListSessionsRequest(state=state))
        return list(reply.sessions)

    async def get_session(self, session_id: str) -> serving_pb2.ServingSession:
        return await self._call(self._stub.GetSession, serving_pb2.GetSessionRequest(session_id=session_id))

    async def deploy(self, model: str, interface: str | None = None, *, executor: str = "auto", rule_pack: str = "",
                     session_id: str = "") -> serving_pb2.ServingSession:
        request = serving_pb2.DeployRequest(
            model=model, interface=_interface(interface) if interface else common_pb2.INTERFACE_KIND_UNSPECIFIED,
            executor=EXECUTORS[executor], rule_pack=rule_pack, session_id=session_id)
        return await self._call(self._stub.Deploy, request, self._deploy_timeout_s)

    async def find_or_deploy(self, artifact_id: str, interface: str, *,
                             executor: str = "auto") -> serving_pb2.ServingSession:
        """A READY session for `artifact_id` as `interface`, by the policy in the module docstring."""
        kind = _interface(interface)
        lock = self._deploys.setdefault((artifact_id, interface), asyncio.Lock())
        async with lock:
            found = await self._find(artifact_id, kind)
            if found is not None and found.state == READY:
                return found
            session_id = found.id if found is not None else session_id_for(artifact_id, interface)
            if found is None:
                try:
                    return await self.deploy(artifact_id, interface, executor=executor, session_id=session_id)
                except AlreadyExists:
                    pass  # someone else is deploying it under that id: wait for theirs
            return await self._wait_ready(session_id)

    async def _find(self, artifact_id: str, kind: int) -> serving_pb2.ServingSession | None:
        """The READY session to reuse, or the DEPLOYING one to wait for; UNAVAILABLE when the model is halted."""
        mine = [s for s in await self.list_sessions() if s.artifact_id == artifact_id]
        oldest = sorted(mine, key=lambda s: (s.created_at.ToNanoseconds(), s.id))
        for state in (READY, HALTED, DEPLOYING):
            for s in oldest:
                if s.state == state and (s.interface == kind or state == HALTED):
                    if state == HALTED:
                        raise Unavailable(f"{artifact_id} is halted in session {s.id} ({s.halt_reason or 'no reason'})"
                                          "; resume or undeploy that session to use the model again", field="model")
                    return s
        return None

    async def _wait_ready(self, session_id: str) -> serving_pb2.ServingSession:
        deadline = time.monotonic() + self._deploy_timeout_s
        while True:
            session = await self.get_session(session_id)
            if session.state == READY:
                return session
            if session.state != DEPLOYING:
                name = serving_pb2.SessionState.Name(session.state).removeprefix("SESSION_STATE_").lower()
                raise Unavailable(f"session {session_id} is {name}, not ready", field="model")
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"session {session_id} did not become ready", field="model")
            await asyncio.sleep(0.1)

    # ---- the five typed interfaces (timeout_s: this call's deadline; None: the client's default) ----

    def _options(self, priority: int, request_id: str) -> serving_pb2.RequestOptions:
        return serving_pb2.RequestOptions(priority=priority, request_id=request_id)

    async def predict(self, session_id: str, features: Row | Sequence[Row], *, priority: int = 0,
                      request_id: str = "", timeout_s: float | None = None) -> list[Prediction]:
        reply = await self._call(self._stub.Predict, serving_pb2.PredictRequest(
            session_id=session_id, rows=_rows(features), options=self._options(priority, request_id)), timeout_s)
        return [Prediction(tuple(p.values)) for p in reply.predictions]

    async def forecast(self, session_id: str, history: Sequence[float], horizon: int, *, priority: int = 0,
                       request_id: str = "", timeout_s: float | None = None) -> list[float]:
        reply = await self._call(self._stub.Forecast, serving_pb2.ForecastRequest(
            session_id=session_id, history=history, horizon=horizon, options=self._options(priority, request_id)),
            timeout_s)
        return list(reply.forecast)

    async def classify(self, session_id: str, data: Row | Sequence[Row] | Sequence[str], *, priority: int = 0,
                       request_id: str = "", timeout_s: float | None = None) -> list[Classification]:
        """Feature rows, or texts for a text classifier (a list of strings)."""
        texts = isinstance(data, str) or (isinstance(data, Sequence) and bool(data) and isinstance(data[0], str))
        request = serving_pb2.ClassifyRequest(session_id=session_id, options=self._options(priority, request_id))
        if texts:
            request.texts.extend([data] if isinstance(data, str) else data)
        else:
            request.rows.extend(_rows(data))
        reply = await self._call(self._stub.Classify, request, timeout_s)
        return [Classification(c.label, c.probability, {s.label: s.probability for s in c.scores})
                for c in reply.classifications]

    async def segment(self, session_id: str, series: Sequence[float], *, priority: int = 0,
                      request_id: str = "", timeout_s: float | None = None) -> Segmentation:
        reply = await self._call(self._stub.Segment, serving_pb2.SegmentRequest(
            session_id=session_id, series=series, options=self._options(priority, request_id)), timeout_s)
        return Segmentation(tuple(reply.change_points),
                            tuple(Segment(s.start, s.end, s.mean, s.stddev) for s in reply.segments))

    async def analyze(self, session_id: str, texts: Sequence[str] | str, *, priority: int = 0,
                      request_id: str = "", timeout_s: float | None = None) -> list[Analysis]:
        reply = await self._call(self._stub.Analyze, serving_pb2.AnalyzeRequest(
            session_id=session_id, texts=[texts] if isinstance(texts, str) else texts,
            options=self._options(priority, request_id)), timeout_s)
        return [Analysis(a.label, a.score, dict(a.scores)) for a in reply.analyses]
