"""Bring your own model across the services: a real registry, the puller and serving (with the Triton it
starts) in-process on 127.0.0.1:0, and the public `mlmesh` client and the `mlmesh` command pushing to them.
The models are the real ones tests/puller/formats trains (scikit-learn, XGBoost, LightGBM, PyTorch)."""

from __future__ import annotations

import pytest_asyncio
import yaml

import mlmesh
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings, PullerSettings, ServerSettings
from services.puller.credentials import CredentialResolver
from services.puller.server import build_puller
from services.registry.server import build_registry
from tests.puller.formats.conftest import (  # noqa: F401  (the trained models, as fixtures)
    data, lgb_models, sk_classifier, sk_regressor, torch_models, xgb_models,
)
from tests.serving.triton.conftest import serving_with_triton, triton_setup  # noqa: F401  (setup once)


class Services:
    def __init__(self, mesh: MeshSettings, root) -> None:
        self.mesh, self.root = mesh, root
        self.issuer = TokenIssuer.from_settings(mesh, AuthSettings())
        self.addresses: dict[str, str] = {}

    def token(self, service: str) -> str:
        return self.issuer.mint("byom-tests", service, ALL_SCOPES)

    def client(self) -> mlmesh.Mesh:
        return mlmesh.Mesh(self.addresses, self.token)

    def topology_file(self):
        """A topology naming these services' ports, for the `mlmesh` command."""
        path = self.root / "topology.yaml"
        services = {}
        for name, address in self.addresses.items():
            host, _, port = address.rpartition(":")
            services[name] = {"module": f"services.{name}", "host": host, "port": int(port)}
        path.write_text(yaml.safe_dump({"services": services}))
        return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(tmp_path_factory, triton_setup):  # noqa: F811
    root = tmp_path_factory.mktemp("byom")
    mesh = MeshSettings(home=root / "home", database_url=f"sqlite+aiosqlite:///{root / 'mesh.db'}")
    mesh.ensure_home()
    found = Services(mesh, root)
    registry = await build_registry(mesh, ServerSettings(), AuthSettings())
    found.addresses["registry"] = f"127.0.0.1:{await registry.start('127.0.0.1', 0)}"
    puller = await build_puller(mesh, ServerSettings(), AuthSettings(), puller=PullerSettings(),
                                credentials=CredentialResolver(root / "credentials", environ={}),
                                registry_address=found.addresses["registry"], cancel_poll_s=0.05)
    found.addresses["puller"] = f"127.0.0.1:{await puller.start('127.0.0.1', 0)}"
    try:
        async with serving_with_triton(mesh, found.addresses["registry"], root) as serving:
            found.addresses["serving"] = serving.address
            yield found
    finally:
        await puller.stop(0)
        await registry.stop(0)
