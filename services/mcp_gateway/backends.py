"""The gateway's side of the mesh: one channel per service, and per-call mesh tokens in its own name.

No token passthrough: every backend call carries a token the gateway mints for that service's audience
with subject `mlmesh-ml-mcp`, only the scopes the tool needs, and the agent's subject as `obo` (audit).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import grpc

from services.core.auth.tokens import TokenIssuer
from services.core.grpc.client import TokenSource
from services.core.grpc.interceptor import REQUEST_ID_KEY
from services.core.observability.grpc_tracing import trace_metadata
from services.mcp_gateway.settings import SERVICE

_MAX_TOKEN_SOURCES = 4096  # (service, scopes, agent) combinations kept; each re-mints itself before expiry


class Backends:
    """Channels are made on first use, inside the running loop (grpc.aio binds a channel to its loop)."""

    def __init__(self, issuer: TokenIssuer, addresses: Mapping[str, str], *, max_message_bytes: int) -> None:
        self._issuer = issuer
        self.addresses = dict(addresses)
        self._options = [("grpc.max_send_message_length", max_message_bytes),
                         ("grpc.max_receive_message_length", max_message_bytes)]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, type], object] = {}
        self._tokens: OrderedDict[tuple, TokenSource] = OrderedDict()

    def channel(self, service: str) -> grpc.aio.Channel:
        channel = self._channels.get(service)
        if channel is None:
            channel = self._channels[service] = grpc.aio.insecure_channel(self.addresses[service],
                                                                          options=self._options)
        return channel

    def stub(self, service: str, stub_class: type):
        """A cached stub of `stub_class` on the channel to `service` (stubs are made once, not per call)."""
        stub = self._stubs.get((service, stub_class))
        if stub is None:
            stub = self._stubs[(service, stub_class)] = stub_class(self.channel(service))
        return stub

    def metadata(self, service: str, scopes: Iterable[str], agent: str, request_id: str) -> tuple:
        """Call metadata for `service`: a gateway token acting for `agent`, and the tool call's request id
        (so the backends' access logs and the gateway's audit line share one id)."""
        key = (service, frozenset(scopes), agent)
        source = self._tokens.get(key)
        if source is None:
            source = self._tokens[key] = TokenSource(self._issuer, service, SERVICE, key[1], on_behalf_of=agent)
            if len(self._tokens) > _MAX_TOKEN_SOURCES:
                self._tokens.popitem(last=False)
        else:
            self._tokens.move_to_end(key)
        # and the current trace context, so the backends' spans join the tool call's trace
        return (("authorization", f"Bearer {source.token()}"), (REQUEST_ID_KEY, request_id)) + trace_metadata()

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        self._stubs.clear()
        for channel in channels.values():
            await channel.close()
