"""Who is calling: the verified identity of a request, carried in a contextvar the interceptor sets."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified mesh token. `on_behalf_of` is the agent a gateway acted for (audit only)."""

    subject: str
    scopes: frozenset[str]
    audience: str
    token_id: str
    expires_at: float
    on_behalf_of: str | None = None

    def has(self, scope: str) -> bool:
        return scope in self.scopes


# A contextvar, not a global: each gRPC call runs in its own task, so each sees only its caller.
_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("mlmesh_principal", default=None)


def current_principal() -> Principal | None:
    return _CURRENT.get()


def set_principal(principal: Principal | None) -> contextvars.Token:
    """Set the caller for the current context; pass the returned token to `reset_principal`."""
    return _CURRENT.set(principal)


def reset_principal(token: contextvars.Token) -> None:
    _CURRENT.reset(token)
