"""data.ml.compile against the real compiler and registry: a demo model saved signed and registered is
compiled to ONNX with progress notifications; the compiled artifact, its operation and its lineage; the
compiled output is then served by the real serving service and predicts like the eager model."""

from __future__ import annotations

import pytest
import torch

from services.compiler.server import build_compiler
from services.core.settings import AuthSettings, ServerSettings
from services.mesh.demo import data
from tests.mcp_gateway.conftest import mcp_http, running


@pytest.fixture
async def compiler(mesh_settings, registry):
    app = await build_compiler(mesh_settings, ServerSettings(), AuthSettings(), registry_address=registry.address,
                               cancel_poll_s=0.05)
    app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
    yield app
    await app.stop(0)


async def test_compile_with_progress_then_serve_the_output(make_gateway, compiler, real_serving, alpha, agent_token):
    gateway = make_gateway(backends={"compiler": compiler.address, "serving": real_serving.address})
    seen = []

    async def progress(value, total, message):
        seen.append((value, message))

    async with running(gateway) as app, mcp_http(app, agent_token()) as client:
        result = await client.call_tool("data.ml.compile", {"artifact": "alpha_bull@prod", "target": "onnx",
                                                            "max_batch_size": 16}, progress_callback=progress)
        assert not result.is_error, result.content
        compiled = result.structured_content["compiled"]
        assert compiled["source_artifact_id"] == alpha.id and compiled["compiler"] == "onnx"
        assert compiled["triton_platform"] == "onnxruntime_onnx" and compiled["validation"]["passed"]
        assert compiled["signed"]  # the compiler signed it; serving verifies it on deploy
        assert [v for v, _ in seen] == sorted(v for v, _ in seen) and seen
        assert {m.split(":")[0] for _, m in seen} <= {"pending", "load", "export", "validate", "store", "register"}

        status = await client.call_tool("data.ml.operation_status", {"operation_id": result.structured_content[
            "operation_id"]})
        assert status.structured_content["operation"]["state"] == "succeeded"
        graph = await client.call_tool("data.ml.lineage", {"entity": f"compiled:{compiled['id']}",
                                                           "direction": "upstream"})
        assert any(e["operation"] == "compile" for e in graph.structured_content["edges"])

        served = await client.call_tool("data.ml.serve", {"model": f"compiled:{compiled['id']}",
                                                          "interface": "predictor", "session_id": "onnx"})
        assert not served.is_error, served.content
        eager = await client.call_tool("data.ml.serve", {"model": alpha.id, "session_id": "eager"})
        rows = data.market(3, torch.Generator().manual_seed(5), regime=0)[0].tolist()
        onnx_out = (await client.call_tool("data.ml.predict", {"session_id": "onnx", "rows": rows}))
        eager_out = (await client.call_tool("data.ml.predict", {"session_id": "eager", "rows": rows}))
        assert not eager.is_error and not onnx_out.is_error, onnx_out.content
        assert [p[0] for p in onnx_out.structured_content["predictions"]] == pytest.approx(
            [p[0] for p in eager_out.structured_content["predictions"]], rel=1e-4, abs=1e-5)

        refused = await client.call_tool("data.ml.compile", {"artifact": "alpha_bull@prod", "target": "onnx",
                                                             "kwargs": {"no_such_knob": 1}})
        assert refused.is_error and refused.meta["mlmesh/error"]["code"] == "INVALID_ARGUMENT", refused.content
        assert refused.meta["mlmesh/error"]["argument"].startswith("kwargs"), refused.content
    await gateway.close()
