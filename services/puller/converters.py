"""Proto -> domain translation for the puller; nothing here decides anything."""

from __future__ import annotations

from collections.abc import AsyncIterator

from mlmesh.v1 import common_pb2, puller_pb2
from services.puller.pipeline import PullSpec
from services.puller.push import Chunk, header_required
from services.puller.upload import PushedFile, PushSpec

_INTERFACES = {
    common_pb2.INTERFACE_KIND_PREDICTOR: "predictor", common_pb2.INTERFACE_KIND_FORECASTER: "forecaster",
    common_pb2.INTERFACE_KIND_CLASSIFIER: "classifier", common_pb2.INTERFACE_KIND_SEGMENTER: "segmenter",
    common_pb2.INTERFACE_KIND_ANALYZER: "analyzer",
}


def pull_spec(request: puller_pb2.PullRequest) -> PullSpec:
    return PullSpec(
        source=request.source,
        allow_patterns=tuple(request.allow_patterns),
        name=request.name,
        aliases=tuple(request.aliases),
        allow_pickle=request.allow_pickle,
    )


def _file(message: puller_pb2.PushFile) -> PushedFile:
    return PushedFile(path=message.path, size=message.size, sha256=message.sha256)


def push_spec(header: puller_pb2.PushHeader) -> PushSpec:
    return PushSpec(
        name=header.name,
        files=tuple(_file(f) for f in header.files),
        aliases=tuple(header.aliases),
        interface=_INTERFACES.get(header.interface, "" if header.interface == 0 else f"#{header.interface}"),
        format=header.format or "auto",
        feature_names=tuple(header.feature_names),
        labels=tuple(header.labels),
        window=header.window,
        reference=_file(header.reference) if header.HasField("reference") else None,
        allow_pickle=header.allow_pickle,
    )


async def push_parts(requests: AsyncIterator[puller_pb2.PushRequest]) -> tuple[PushSpec, AsyncIterator[Chunk]]:
    """The header (the stream's first message) and the chunks after it."""
    iterator = aiter(requests)
    first = await anext(iterator, None)
    if first is None or first.WhichOneof("part") != "header":
        raise header_required()

    async def chunks() -> AsyncIterator[Chunk]:
        async for request in iterator:
            if request.WhichOneof("part") != "chunk":
                raise header_required("chunk")
            yield Chunk(request.chunk.path, request.chunk.offset, request.chunk.data)

    return push_spec(first.header), chunks()
