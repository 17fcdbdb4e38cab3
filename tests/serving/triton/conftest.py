"""The real Triton binary for the tests here: set up once (cached by its stamp), started once per session."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import torch
from safetensors.torch import save_file

from services.core.models.architectures import build_module, load_module
from services.core.settings import AuthSettings, MeshSettings, ServerSettings
from services.serving.triton.launcher import REPO_ROOT, TritonServer, TritonSettings
from services.serving.triton.repository import ModelConfig, ModelRepository, TensorSpec

ARCH = {"type": "mlp", "layers": [8, 32, 16, 4]}
MLP_CONFIG = ModelConfig(inputs=(TensorSpec("x", (8,)),), outputs=(TensorSpec("y", (4,)),), max_batch_size=32)


@pytest.fixture(scope="session")
def triton_setup() -> None:
    """Runs scripts/setup_triton.sh; skips only where it says Triton cannot run on this kind of machine."""
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "setup_triton.sh")], capture_output=True, text=True, timeout=1200
    )
    if done.returncode == 3:
        pytest.skip(done.stderr.strip() or "Triton cannot run on this machine")
    if done.returncode != 0:
        pytest.fail(f"scripts/setup_triton.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}", pytrace=False)


@contextlib.asynccontextmanager
async def serving_with_triton(mesh: MeshSettings, registry_address: str, root: Path):
    """The serving service with the Triton it starts (repository `root/models`, log `root/triton.log`), on
    127.0.0.1:0 (`app.address`); stopped, Triton with it, on the way out. Needs `triton_setup` first."""
    from services.serving.server import ServingSettings, build_serving

    app = await build_serving(
        mesh, ServerSettings(), AuthSettings(), serving=ServingSettings(executor="auto", start_triton=True),
        triton=TritonSettings(url="", stop_grace_s=5, model_repository=root / "models", log_file=root / "triton.log"),
        registry_address=registry_address)
    try:
        assert app.triton is not None, (root / "triton.log").read_text()[-2000:]
        app.address = f"127.0.0.1:{await app.start('127.0.0.1', 0)}"
        yield app
    finally:
        await app.stop(0)


@pytest.fixture(scope="session")
def triton_settings(triton_setup) -> TritonSettings:
    return TritonSettings(url="", stop_grace_s=5)  # always the local binary, whatever the environment says


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def triton(triton_settings, tmp_path_factory):
    home = tmp_path_factory.mktemp("triton")
    server = TritonServer(triton_settings, model_repository=home / "models", log_file=home / "triton.log")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def mlp_weights(tmp_path_factory) -> Path:
    """Fixed weights (seeded), with non-trivial input statistics so the normalisation is exercised."""
    torch.manual_seed(1234)
    module = build_module(ARCH)
    module.input_mean.copy_(torch.linspace(-1, 1, 8))
    module.input_std.copy_(torch.linspace(0.5, 2, 8))
    path = tmp_path_factory.mktemp("weights") / "mlp.safetensors"
    save_file(module.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def reference(mlp_weights):
    """The same module run in-process: what Triton must reproduce."""
    from safetensors.torch import load_file

    module = load_module(ARCH, load_file(mlp_weights))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


@pytest.fixture(scope="session")
def repository(triton) -> ModelRepository:
    return ModelRepository(triton.model_repository)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mlp(triton, repository, mlp_weights):
    """The MLP written as a python-backend entry and loaded once for the session."""
    from services.serving.triton.executor import TritonExecutor

    repository.write_torch_model("mlp", MLP_CONFIG, architecture=ARCH, weights=mlp_weights)
    executor = TritonExecutor(triton.url, "mlp")
    await executor.load()
    yield executor
    await executor.close()
