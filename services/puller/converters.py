"""Proto -> domain translation for the puller; nothing here decides anything."""

from __future__ import annotations

from mlmesh.v1 import puller_pb2
from services.puller.pipeline import PullSpec


def pull_spec(request: puller_pb2.PullRequest) -> PullSpec:
    return PullSpec(
        source=request.source,
        allow_patterns=tuple(request.allow_patterns),
        name=request.name,
        aliases=tuple(request.aliases),
        allow_pickle=request.allow_pickle,
    )
