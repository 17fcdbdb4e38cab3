"""The registry's link to Serving: one ServingClient, made on first use, with the registry's own identity.

The address comes from the topology (`serving`) unless the composition root gives one; it is looked up
when the first run starts, not when the registry starts, so a mesh without serving still runs a
registry (RunSkill then refuses with FAILED_PRECONDITION) and the two services may start in any order.
A caller's token never travels to serving: the registry acts as subject "registry" with
serving.read / serving.deploy / serving.infer, and the run ledger records who asked.
"""

from __future__ import annotations

from pathlib import Path

from services.core.auth.tokens import TokenIssuer
from services.core.clients.serving import DEFAULT_SCOPES, ServingClient
from services.core.errors import FailedPrecondition, NotFound
from services.core.topology import load_topology

SUBJECT = "registry"
SERVICE = "serving"


class ServingLink:
    def __init__(self, issuer: TokenIssuer, *, address: str | None = None, topology_file: Path | None = None,
                 timeout_s: float = 60.0) -> None:
        self.address = address  # tests set it once their serving has a port
        self._issuer = issuer
        self.topology_file = topology_file
        self._timeout_s = timeout_s
        self._client: ServingClient | None = None

    def client(self) -> ServingClient:
        """The client (made in the running loop on first use); FailedPrecondition when there is no serving."""
        if self._client is None:
            address = self.address or self._from_topology()
            self._client = ServingClient.connect(address, self._issuer, subject=SUBJECT, scopes=DEFAULT_SCOPES,
                                                 timeout_s=self._timeout_s)
        return self._client

    def _from_topology(self) -> str:
        try:
            return load_topology(self.topology_file).get(SERVICE).address
        except NotFound:
            raise FailedPrecondition("this mesh has no serving service in its topology, and skill steps run on "
                                     "serving; add `serving` to the topology (MLMESH_TOPOLOGY_FILE)") from None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
