"""The five interfaces implemented client-side: a served session behind `Predictor.predict` & co., so a
caller programs against the ABC whatever backs it (an in-process backend, a local session, or this).

Each Remote* class is the interface bound (interfaces.binding) to a `RemoteRunner`, which sends the typed
call as the matching Serving RPC through the core `ServingClient` (a mesh token rides on the client's
channel) and turns the reply into the same result dataclasses the in-process backends return.
`CallOptions` travel as they do in process: priority and request id in the request, `timeout_s` as the
call's gRPC deadline (serving takes it back as the request's deadline). Errors come back as the domain
errors serving raised (`raise_domain_error`): a halted session is `Unavailable`, an unknown one
`NotFound`, a bad row `InvalidArgument` with the same field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from services.core.clients.serving import ServingClient
from services.core.errors import InvalidArgument
from services.serving.interfaces.base import Interface
from services.serving.interfaces.binding import (
    BoundAnalyzer,
    BoundClassifier,
    BoundForecaster,
    BoundPredictor,
    BoundSegmenter,
)
from services.serving.interfaces.calls import AnalyzeCall, Call, ClassifyCall, ForecastCall, PredictCall, SegmentCall
from services.serving.interfaces.results import (
    Analysis,
    CallOptions,
    Classification,
    Forecast,
    Prediction,
    Segment,
    Segmentation,
)

_DEFAULT = CallOptions()


def _plain(values: Any) -> Any:
    """Arrays (and lists of arrays) as plain lists: protobuf takes lists of numbers, not ndarrays."""
    if hasattr(values, "tolist"):
        return values.tolist()
    if isinstance(values, Sequence) and not isinstance(values, str) and values and hasattr(values[0], "tolist"):
        return [v.tolist() for v in values]
    return values


async def _predict(client: ServingClient, sid: str, call: PredictCall, kw: dict) -> list[Prediction]:
    return [Prediction(tuple(p.values)) for p in await client.predict(sid, _plain(call.features), **kw)]


async def _forecast(client: ServingClient, sid: str, call: ForecastCall, kw: dict) -> Forecast:
    return Forecast(tuple(await client.forecast(sid, _plain(call.history), call.horizon, **kw)))


async def _classify(client: ServingClient, sid: str, call: ClassifyCall, kw: dict) -> list[Classification]:
    return [Classification(c.label, c.probability, dict(c.scores))
            for c in await client.classify(sid, _plain(call.data), **kw)]


async def _segment(client: ServingClient, sid: str, call: SegmentCall, kw: dict) -> Segmentation:
    reply = await client.segment(sid, _plain(call.series), **kw)
    return Segmentation(tuple(reply.change_points),
                        tuple(Segment(s.start, s.end, s.mean, s.stddev) for s in reply.segments))


async def _analyze(client: ServingClient, sid: str, call: AnalyzeCall, kw: dict) -> list[Analysis]:
    return [Analysis(a.label, a.score, dict(a.scores)) for a in await client.analyze(sid, call.texts, **kw)]


_SEND: dict[type, tuple[Callable[..., Awaitable[Any]], str]] = {
    PredictCall: (_predict, "rows"), ForecastCall: (_forecast, "history"), ClassifyCall: (_classify, "rows"),
    SegmentCall: (_segment, "series"), AnalyzeCall: (_analyze, "texts"),
}


class RemoteRunner:
    """A CallRunner (interfaces.binding) that serves every call through one session of a Serving service."""

    def __init__(self, client: ServingClient, session_id: str) -> None:
        self.client = client
        self.session_id = session_id

    async def __call__(self, call: Call, options: CallOptions | None = None) -> Any:
        send, field = _SEND[type(call)]
        o = options or _DEFAULT
        kw = {"priority": o.priority, "request_id": o.request_id, "timeout_s": o.timeout_s}
        try:
            return await send(self.client, self.session_id, call, kw)
        except (TypeError, ValueError) as exc:  # protobuf refused a value while the request was built
            raise InvalidArgument(f"cannot be sent: {exc}", field=field) from None


def _serving_client(client: ServingClient | grpc.aio.Channel) -> ServingClient:
    """A channel must come from services.core.grpc.client.connect (its calls carry the mesh token)."""
    return client if isinstance(client, ServingClient) else ServingClient(client)


class _Remote:
    def __init__(self, session_id: str, client: ServingClient | grpc.aio.Channel) -> None:
        self.session_id = session_id
        self.client = _serving_client(client)
        super().__init__(RemoteRunner(self.client, session_id))  # type: ignore[call-arg]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r})"


class RemotePredictor(_Remote, BoundPredictor):
    """`predict(features)` on a served predictor session."""


class RemoteForecaster(_Remote, BoundForecaster):
    """`forecast(history, horizon)` on a served forecaster session."""


class RemoteClassifier(_Remote, BoundClassifier):
    """`classify(rows or texts)` on a served classifier session."""


class RemoteSegmenter(_Remote, BoundSegmenter):
    """`segment(series)` on a served segmenter session."""


class RemoteAnalyzer(_Remote, BoundAnalyzer):
    """`analyze(texts)` on a served analyzer session."""


REMOTE_CLASSES: Mapping[str, type[Interface]] = {
    cls.kind: cls for cls in (RemotePredictor, RemoteForecaster, RemoteClassifier, RemoteSegmenter, RemoteAnalyzer)
}


def remote_interface(kind: str, session_id: str, client: ServingClient | grpc.aio.Channel) -> Interface:
    """The interface `kind` ("predictor", ...) of the served session `session_id`."""
    try:
        cls = REMOTE_CLASSES[kind]
    except KeyError:
        raise InvalidArgument(f"unknown interface {kind!r}; known: {sorted(REMOTE_CLASSES)}",
                              field="interface") from None
    return cls(session_id, client)  # type: ignore[call-arg]


async def deployed_interface(client: ServingClient, artifact_id: str, kind: str, *,
                             executor: str = "auto") -> Interface:
    """The interface of a READY session serving `artifact_id`, reused or deployed by the client's
    find-or-deploy policy (a halted model refuses with Unavailable; it is never routed around)."""
    session = await client.find_or_deploy(artifact_id, kind, executor=executor)
    return remote_interface(kind, session.id, client)
