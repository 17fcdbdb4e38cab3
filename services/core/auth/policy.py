"""Scopes and `policy_check`, the hook every lifecycle operation calls before it acts."""

from __future__ import annotations

from services.core.auth.principal import Principal, current_principal
from services.core.errors import PermissionDenied, Unauthenticated

REGISTRY_READ = "registry.read"
REGISTRY_WRITE = "registry.write"
SKILLS_PUBLISH = "skills.publish"
SKILLS_RUN = "skills.run"
LINEAGE_WRITE = "lineage.write"
OPERATIONS_READ = "operations.read"
OPERATIONS_CANCEL = "operations.cancel"
PULLER_PULL = "puller.pull"
PULLER_PUSH = "puller.push"  # bring one's own model: upload files that become an artifact
PULLER_ALLOW_PICKLE = "puller.allow_pickle"  # operators only: accept pickle weights (loaded weights-only)
COMPILER_COMPILE = "compiler.compile"
SERVING_READ = "serving.read"
SERVING_DEPLOY = "serving.deploy"
SERVING_INFER = "serving.infer"
SERVING_HALT = "serving.halt"

ALL_SCOPES: frozenset[str] = frozenset({
    REGISTRY_READ, REGISTRY_WRITE, SKILLS_PUBLISH, SKILLS_RUN, LINEAGE_WRITE, OPERATIONS_READ,
    OPERATIONS_CANCEL, PULLER_PULL, PULLER_PUSH, PULLER_ALLOW_PICKLE, COMPILER_COMPILE, SERVING_READ, SERVING_DEPLOY,
    SERVING_INFER, SERVING_HALT,
})


def policy_check(scope: str, principal: Principal | None = None) -> Principal:
    """The caller, when it holds `scope`; else Unauthenticated (no caller) or PermissionDenied."""
    if principal is None:
        principal = current_principal()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    if scope not in principal.scopes:
        raise PermissionDenied(f"missing scope {scope!r}")
    return principal
