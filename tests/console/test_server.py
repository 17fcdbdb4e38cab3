"""The console's static server on its own (no mesh, no browser): page paths answer index.html, files stay inside
the build, strict headers everywhere, and an unbuilt console says how to build it."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from services.console.app import build_app
from services.console.server import serving_replicas
from services.core.topology import ServiceEndpoint, Topology

REPLICAS = ["serving@127.0.0.1:50054", "serving@127.0.0.1:50055"]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<div id="app"></div>')
    (root / "assets" / "index-abc.js").write_text("console.log(1)")
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    return root


async def fetch(dist: Path, path: str) -> httpx2.Response:
    app = build_app(dist, serving_replicas=REPLICAS, replica_header="x-mlmesh-replica")
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://console") as client:
        return await client.get(path)


@pytest.mark.parametrize("path", ["/console/", "/console/ml/skills", "/console/ml/serving", "/console/ml/pull"])
async def test_every_page_path_answers_the_uncached_index_with_strict_headers(dist, path):
    reply = await fetch(dist, path)
    assert reply.status_code == 200 and reply.text == '<div id="app"></div>'
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-security-policy"].startswith("default-src 'self';")
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff" and reply.headers["referrer-policy"] == "no-referrer"


async def test_hashed_assets_are_immutable_and_missing_files_are_404_not_the_index(dist):
    reply = await fetch(dist, "/console/assets/index-abc.js")
    assert reply.status_code == 200 and "immutable" in reply.headers["cache-control"]
    assert reply.headers["content-security-policy"].startswith("default-src 'self'")
    assert (await fetch(dist, "/console/favicon.svg")).text == "<svg/>"
    assert (await fetch(dist, "/console/assets/missing.js")).status_code == 404
    assert (await fetch(dist, "/console/missing.png")).status_code == 404


async def test_nothing_outside_the_build_is_served(dist):
    for path in ("/console/../secret.txt", "/console/%2e%2e/secret.txt", "/console/assets/../../secret.txt"):
        reply = await fetch(dist, path)
        assert "outside the build" not in reply.text, path


async def test_config_names_each_serving_replica_and_health_says_whether_it_is_built(dist, tmp_path):
    config = (await fetch(dist, "/console/config.json")).json()
    assert config == {"base": "/console/", "servingReplicas": REPLICAS, "replicaHeader": "x-mlmesh-replica"}
    assert (await fetch(dist, "/healthz")).json() == {"status": "ok", "built": True}
    unbuilt = tmp_path / "none"
    assert (await fetch(unbuilt, "/healthz")).json() == {"status": "ok", "built": False}
    reply = await fetch(unbuilt, "/console/ml/skills")
    assert reply.status_code == 503 and "make console" in reply.text


def test_serving_replicas_follow_the_topology_rule_of_consecutive_ports():
    topology = Topology(services={"serving": ServiceEndpoint(name="serving", port=50054, replicas=2)})
    assert serving_replicas(topology) == REPLICAS
    assert serving_replicas(Topology(services={})) == []
