"""The Triton executor against the real `tritonserver` binary (python backend, CPU)."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from services.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.serving.engine.executor import SuspendableExecutor
from services.serving.triton.executor import TritonExecutor
from services.serving.triton.launcher import TritonServer
from services.serving.triton.repository import ModelConfig, ModelRepository, TensorSpec
from tests.serving.triton.conftest import ARCH, MLP_CONFIG

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


async def _loaded(triton, repository, name, mlp_weights, config=MLP_CONFIG) -> TritonExecutor:
    repository.write_torch_model(name, config, architecture=ARCH, weights=mlp_weights)
    executor = TritonExecutor(triton.url, name)
    await executor.load()
    return executor


async def model_ready(url: str, name: str) -> bool:
    client = InferenceServerClient(url)
    try:
        return await client.is_model_ready(name)
    finally:
        await client.close()


async def model_stats(url: str, name: str, inferences: int | None = None) -> dict[str, int]:
    """Triton's counters for `name`; they are updated just after the response goes out, so wait until
    `inferences` have been counted."""
    client = InferenceServerClient(url)
    try:
        for _ in range(100):
            stats = (await client.get_inference_statistics(name, as_json=True))["model_stats"][0]
            counts = {k: int(stats.get(k, 0)) for k in ("inference_count", "execution_count")}
            if inferences is None or counts["inference_count"] >= inferences:
                return counts
            await asyncio.sleep(0.02)
        return counts
    finally:
        await client.close()


async def test_startup_time_is_measured(triton, record_property):
    assert triton.startup_s is not None and 0 < triton.startup_s < 30
    record_property("triton_startup_s", round(triton.startup_s, 3))
    print(f"tritonserver ready in {triton.startup_s:.2f} s")


@pytest.mark.parametrize("rows", [1, 7, 32])
async def test_outputs_equal_the_module_in_process(mlp, reference, rows):
    x = _rows(rows, seed=rows)
    out = await mlp.execute({"x": x})
    assert set(out) == {"y"} and out["y"].shape == (rows, 4) and out["y"].dtype == np.float32
    np.testing.assert_allclose(out["y"], reference(x), atol=1e-5, rtol=0)


async def test_one_triton_request_per_batch(triton, mlp):
    before = await model_stats(triton.url, "mlp")
    for rows in (3, 32, 5):
        await mlp.execute({"x": _rows(rows)})
    after = await model_stats(triton.url, "mlp", inferences=before["inference_count"] + 40)
    assert after["inference_count"] - before["inference_count"] == 40
    assert after["execution_count"] - before["execution_count"] == 3


async def test_bad_inputs_are_invalid_argument_naming_the_input(mlp):
    cases = [
        ({"x": _rows(4)[:, :7]}, "x"),  # wrong row shape
        ({"x": _rows(4).astype(np.complex64)}, "x"),  # no same-kind cast to float32
        ({"x": _rows(4), "z": _rows(4)}, "z"),  # unknown input
        ({}, "x"),  # missing input
        ({"x": _rows(33)}, None),  # over max_batch_size
    ]
    for batch, field in cases:
        with pytest.raises(InvalidArgument) as caught:
            await mlp.execute(batch)
        assert caught.value.field == field
    assert (await mlp.execute({"x": _rows(2).astype(np.float64)}))["y"].shape == (2, 4)  # same-kind cast


async def test_unload_halts_every_path_and_load_resumes(triton, repository, mlp_weights, reference):
    executor = await _loaded(triton, repository, "mlp_halt", mlp_weights)
    outsider = TritonExecutor(triton.url, "mlp_halt")  # e.g. another replica that did not see the halt
    await outsider.load()
    client = InferenceServerClient(triton.url)
    x = _rows(5)
    try:
        assert isinstance(executor, SuspendableExecutor)  # the engine's halt / resume protocol
        await executor.suspend()
        assert not await client.is_model_ready("mlp_halt")
        with pytest.raises(Unavailable, match="halted"):
            await executor.execute({"x": x})
        with pytest.raises(Unavailable, match="not served"):  # Triton's own answer, mapped
            await outsider.execute({"x": x})
        raw = InferInput("x", [5, 8], "FP32")
        raw.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException):  # around mlmesh: Triton itself refuses
            await client.infer("mlp_halt", [raw])
        await executor.restore()
        np.testing.assert_allclose((await executor.execute({"x": x}))["y"], reference(x), atol=1e-5, rtol=0)
    finally:
        await client.close()
        await outsider.close(unload=False)
        await executor.close()
    assert not await model_ready(triton.url, "mlp_halt")  # close() unloaded it


async def test_dynamic_batching_splits_rows_back_to_their_requests(triton, repository, mlp_weights, reference):
    config = ModelConfig(MLP_CONFIG.inputs, MLP_CONFIG.outputs, max_batch_size=32, dynamic_batching_delay_us=100_000)
    executor = await _loaded(triton, repository, "mlp_dynamic", mlp_weights, config)
    try:
        batches = [_rows(n, seed=n) for n in (1, 2, 3, 4, 5, 6, 7, 4)]
        outs = await asyncio.gather(*(executor.execute({"x": x}) for x in batches))
        for x, out in zip(batches, outs):
            np.testing.assert_allclose(out["y"], reference(x), atol=1e-5, rtol=0)
        stats = await model_stats(triton.url, "mlp_dynamic", inferences=32)
        assert stats["inference_count"] == 32 and stats["execution_count"] < len(batches)
    finally:
        await executor.close()


async def test_onnx_model_runs_under_onnxruntime_in_triton(triton, repository, tmp_path):
    rng = np.random.default_rng(7)
    w, b = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    path = tmp_path / "affine.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    # External data, as torch's exporter writes it: the weights live in affine.onnx.data beside the graph.
    onnx.save(model, path, save_as_external_data=True, location="affine.onnx.data", size_threshold=0)
    assert (tmp_path / "affine.onnx.data").is_file()
    config = ModelConfig((TensorSpec("x", (8,)),), (TensorSpec("y", (3,)),), max_batch_size=16)
    repository.write_onnx_model("affine_onnx", config, onnx_file=path)
    executor = TritonExecutor(triton.url, "affine_onnx")
    await executor.load()
    try:
        x = _rows(9)
        np.testing.assert_allclose((await executor.execute({"x": x}))["y"], x @ w + b, atol=1e-5, rtol=0)
    finally:
        await executor.close()


async def test_weights_that_do_not_fit_fail_the_load(triton, repository, tmp_path, mlp_weights):
    misfit = {**ARCH, "layers": [8, 5, 4]}
    repository.write_torch_model("mlp_misfit", MLP_CONFIG, architecture=misfit, weights=mlp_weights)
    executor = TritonExecutor(triton.url, "mlp_misfit")
    try:
        with pytest.raises(FailedPrecondition, match="do not fit"):
            await executor.load()
    finally:
        await executor.close()


def _group(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (Triton and the backend stubs it spawned)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


async def test_stop_leaves_no_process_behind(triton_settings, tmp_path, mlp_weights):
    server = TritonServer(triton_settings, model_repository=tmp_path / "models", log_file=tmp_path / "t.log")
    await server.start()  # a second server beside the session's: ports and stub memory must not collide
    pid = server.pid
    try:
        repository = ModelRepository(server.model_repository)
        executor = await _loaded(server, repository, "mlp_stop", mlp_weights)
        await executor.execute({"x": _rows(2)})
        await executor.close(unload=False)  # leave the model loaded: stop() must end its stub too
        assert len(_group(pid)) >= 2  # tritonserver + the model's stub
    finally:
        await server.stop()
    assert _group(pid) == [] and not os.path.exists(f"/proc/{pid}")
    gone = TritonExecutor(server.url, "mlp_stop")
    with pytest.raises(Unavailable):  # and nothing answers there any more
        await gone.load()
    await gone.close()


async def test_a_port_taken_before_triton_binds_is_retried(triton_settings, tmp_path, monkeypatch):
    import socket

    from services.serving.triton import launcher

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = launcher._free_port
    monkeypatch.setattr(launcher, "_free_port", lambda: next(ports, None) or real())
    server = TritonServer(triton_settings, model_repository=tmp_path / "models", log_file=tmp_path / "t.log")
    try:
        await server.start()
        assert server.url != f"127.0.0.1:{taken.getsockname()[1]}"
        assert "already in use" in (tmp_path / "t.log").read_text()
    finally:
        await server.stop()
        taken.close()
