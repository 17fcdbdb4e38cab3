"""The gateway's /metrics: tool calls by tool, outcome and scope (refusals at the HTTP gate too), and their
durations, scraped over HTTP after a few calls through a real MCP session."""

from __future__ import annotations

import asyncio

import pytest

from services.core.settings import MLSettings, ObservabilitySettings
from services.mcp_gateway.app import build_gateway
from services.mcp_gateway.settings import GatewaySettings
from tests.mcp_gateway.conftest import CANONICAL, mcp_http, running
from tests.scrape import scrape

CALLS = "mlmesh_mcp_tool_calls_total"


@pytest.fixture
async def metered(mesh_settings, serving, tmp_path):
    gateway = build_gateway(mesh=mesh_settings, ml=MLSettings(mcp_ml_canonical_uri=CANONICAL),
                            settings=GatewaySettings(audit_file=tmp_path / "audit.jsonl"),
                            addresses={"serving": serving.address},
                            observability=ObservabilitySettings(metrics_port=0))
    assert gateway.metrics.serve(None) > 0   # MLMESH_METRICS_PORT=0: a free port
    yield gateway
    await gateway.close()
    assert gateway.metrics.port is not None and gateway.metrics._server is None   # closed with the gateway


async def test_tool_calls_are_counted_by_tool_outcome_and_scope(metered, agent_token):
    before = await asyncio.to_thread(scrape, metered.metrics.url)
    assert before.value(CALLS) == 0
    async with running(metered) as app:
        async with mcp_http(app, agent_token()) as client:
            await client.call_tool("data.ml.serve", {"model": "m", "interface": "predictor", "session_id": "s"})
            for _ in range(3):
                ok = await client.call_tool("data.ml.predict", {"session_id": "s", "rows": [[1, 2, 3]]})
                assert not ok.is_error
            missing = await client.call_tool("data.ml.predict", {"session_id": "nope", "rows": [[1]]})
            assert missing.is_error
        async with mcp_http(app, agent_token(("registry.read",))) as reader:
            with pytest.raises(Exception):   # the gate answers 403 insufficient_scope
                await reader.call_tool("data.ml.predict", {"session_id": "s", "rows": [[1, 2, 3]]})

    after = await asyncio.to_thread(scrape, metered.metrics.url)
    assert after.value(CALLS, tool="data.ml.serve", outcome="ok", scope="serving.deploy") == 1
    assert after.value(CALLS, tool="data.ml.predict", outcome="ok", scope="serving.infer") == 3
    assert after.value(CALLS, tool="data.ml.predict", outcome="NOT_FOUND", scope="serving.infer") == 1
    assert after.value(CALLS, tool="data.ml.predict", outcome="PERMISSION_DENIED") == 1
    assert after.value("mlmesh_mcp_tool_call_duration_seconds_count", tool="data.ml.predict") == 5
    assert after.value("mlmesh_service_info", service="mlmesh-ml-mcp") == 1
