"""The servers bench/serving.py measures, each its own process on free loopback ports of a temporary folder:
the mlmesh registry + serving pair (as `mlmesh up` runs them, in-process executor), the bare echo server,
Seldon MLServer (from .bench-venvs/mlserver) and the real Triton binary (from .triton-venv).

Models are saved signed and registered the way the demo seed does, then deployed through Serving/Deploy.
MLServer and Triton get the same MLP weights (an .npz, a safetensors file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import torch
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from safetensors.torch import save_file
from tritonclient.grpc.aio import InferenceServerClient

from _load import ROOT, free_port, python, spawn, stop, wait_until
from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.auth.tokens import TokenIssuer
from services.core.clients.registry import RegistryClient
from services.core.lineage import LineageBus
from services.core.settings import AuthSettings, MeshSettings

MLSERVER_VENV = ROOT / ".bench-venvs" / "mlserver"


async def _healthy(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def mesh_env(root: Path, home: Path, ports: dict[str, int], log_level: str) -> dict[str, str]:
    """The environment of bench service processes: a topology of `ports` on loopback under `root`, a home
    of their own, serving in-process (the benches compare request paths, not Triton)."""
    home.mkdir(parents=True)
    topology = root / "topology.yaml"
    topology.write_text(yaml.safe_dump({"services": {
        name: {"module": f"services.{name}", "host": "127.0.0.1", "port": port} for name, port in ports.items()
    }}))
    return {"MLMESH_HOME": str(home), "MLMESH_TOPOLOGY_FILE": str(topology),
            "MLMESH_SERVING_START_TRITON": "false", "MLMESH_SERVING_EXECUTOR": "in_process",
            "MLMESH_LOG_LEVEL": log_level}


class Mesh:
    """Registry + serving processes; `stub` calls Serving with an operator token (`metadata`)."""

    def __init__(self, root: Path, log_level: str) -> None:
        self.home = root / "home"
        self.ports = {"registry": free_port(), "serving": free_port()}
        self.env = mesh_env(root, self.home, self.ports, log_level)
        self.processes: dict = {}
        self.address = f"127.0.0.1:{self.ports['serving']}"

    async def __aenter__(self) -> Mesh:
        self.channel = None
        try:
            for name in ("registry", "serving"):
                log = self.home / f"{name}.log"
                process = self.processes[name] = spawn([python(), "-m", f"services.{name}"], log, self.env)
                address = f"127.0.0.1:{self.ports[name]}"
                await wait_until(lambda a=address: _healthy(a), process, log, name)
        except BaseException:
            await self.__aexit__()  # a half-started pair must not outlive the bench
            raise
        self.mesh = MeshSettings(home=self.home)
        self.issuer = TokenIssuer.from_settings(self.mesh, AuthSettings())
        self.token = self.issuer.mint("bench", "serving", ALL_SCOPES)
        self.metadata = (("authorization", f"Bearer {self.token}"),)
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = serving_pb2_grpc.ServingStub(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.channel is not None:
            await self.channel.close()
        for process in reversed(list(self.processes.values())):
            stop(process)

    async def publish(self, name: str, module: torch.nn.Module, architecture: dict, **save) -> str:
        """Save `module` signed through the artifact toolkit and register it as name@prod; its id."""
        kit = build_artifact_toolkit(self.mesh, LineageBus(), service="bench", write_scope=REGISTRY_WRITE,
                                     read_scope=REGISTRY_WRITE)
        client = RegistryClient.connect(f"127.0.0.1:{self.ports['registry']}", self.issuer, subject="bench",
                                        scopes=ALL_SCOPES)
        token = set_principal(Principal("bench", frozenset(ALL_SCOPES), "registry", "b", time.time() + 3600))
        try:
            saved = await kit.saver.save(module.state_dict(), architecture=architecture, **save)
            await client.register_artifact(saved.manifest, name=name, aliases=["prod"],
                                           signature=signature_message(kit.signer, saved.signature))
            return saved.artifact_id
        finally:
            reset_principal(token)
            await client.close()

    async def deploy(self, session_id: str, model: str, *, max_batch_size: int = 0,
                     iteration_level: bool | None = None) -> serving_pb2.ServingSession:
        batching = serving_pb2.BatchingConfig(max_batch_size=max_batch_size)
        if iteration_level is not None:
            batching.iteration_level = iteration_level
        request = serving_pb2.DeployRequest(model=model, session_id=session_id, batching=batching,
                                            executor=serving_pb2.EXECUTOR_KIND_IN_PROCESS)
        return await self.stub.Deploy(request, metadata=self.metadata, timeout=120)

    async def session(self, session_id: str) -> serving_pb2.ServingSession:
        return await self.stub.GetSession(serving_pb2.GetSessionRequest(session_id=session_id),
                                          metadata=self.metadata, timeout=10)


class EchoServer:
    def __init__(self, root: Path, rows: int, outputs: int) -> None:
        self.log, self.port, self.args = root / "echo.log", free_port(), (rows, outputs)
        self.address = f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> EchoServer:
        self.process = spawn([python(), str(ROOT / "bench" / "_echo_server.py"), str(self.port),
                              *map(str, self.args)], self.log)

        async def up() -> bool:
            async with grpc.aio.insecure_channel(self.address) as channel:
                await channel.channel_ready()
                return True

        try:
            await wait_until(up, self.process, self.log, "echo server", 30)
        except BaseException:
            stop(self.process)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop(self.process)


async def _model_ready(url: str, name: str) -> bool:
    client = InferenceServerClient(url)
    try:
        return await client.is_model_ready(name, client_timeout=2)
    finally:
        await client.close()


class MLServer:
    """MLServer with adaptive batching; `reason` says why not when it cannot run here."""

    def __init__(self, root: Path, weights: dict[str, np.ndarray], max_batch_size: int, max_batch_time_s: float):
        self.folder, self.log, self.reason, self.process = root / "mlserver", root / "mlserver.log", "", None
        self.url = f"127.0.0.1:{free_port()}"
        binary = MLSERVER_VENV / "bin" / "mlserver"
        if not binary.is_file():  # first run: build its environment (~35 s, once)
            done = subprocess.run([str(ROOT / "bench" / "setup_mlserver.sh")], capture_output=True, text=True,
                                  timeout=900)
            if done.returncode != 0 or not binary.is_file():
                why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                self.reason = f"bench/setup_mlserver.sh: {why}"
                return
        model = self.folder / "mlp"
        model.mkdir(parents=True)
        np.savez(model / "weights.npz", **weights)
        shutil.copyfile(ROOT / "bench" / "_mlserver_model.py", model / "_mlserver_model.py")
        (model / "model-settings.json").write_text(json.dumps({
            "name": "mlp", "implementation": "_mlserver_model.NumpyMLP",
            "parameters": {"uri": str(model / "weights.npz")},  # absolute: MLServer does not resolve "./"
            "max_batch_size": max_batch_size, "max_batch_time": max_batch_time_s}))
        # parallel_workers 0: inference in the server process (a worker pool adds a process hop per batch).
        (self.folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": free_port(), "grpc_port": int(self.url.rsplit(":", 1)[1]),
            "metrics_port": free_port(), "parallel_workers": 0, "debug": False}))
        self.binary = binary

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def __aenter__(self) -> MLServer:
        if not self.reason:
            self.process = spawn([str(self.binary), "start", str(self.folder)], self.log, cwd=self.folder)
            try:
                await wait_until(lambda: _model_ready(self.url, "mlp"), self.process, self.log, "MLServer", 120)
            except BaseException:
                stop(self.process)
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop(self.process)


class Triton:
    """The real tritonserver with the MLP as a python-backend entry and Triton's dynamic batcher."""

    def __init__(self, root: Path, module: torch.nn.Module, architecture: dict, features: int, outputs: int) -> None:
        from services.serving.triton.launcher import TritonServer, TritonSettings, available

        self.reason, self.server, self.url = "", None, ""
        settings = TritonSettings(url="", stop_grace_s=2)
        probe = available(settings)
        if not probe:
            self.reason = probe.reason
            return
        self.server = TritonServer(settings, model_repository=root / "triton" / "models", log_file=root / "triton.log")
        self.weights, self.architecture, self.shape = root / "mlp.safetensors", architecture, (features, outputs)
        save_file(module.state_dict(), self.weights)

    async def __aenter__(self) -> Triton:
        if self.server is None:
            return self
        from services.serving.triton.repository import ModelConfig, ModelRepository, TensorSpec

        config = ModelConfig(inputs=(TensorSpec("input", (self.shape[0],)),),
                             outputs=(TensorSpec("output", (self.shape[1],)),), max_batch_size=32,
                             dynamic_batching_delay_us=0, threads=1)
        ModelRepository(self.server.model_repository).write_torch_model(
            "mlp", config, architecture=self.architecture, weights=self.weights)
        await self.server.start()  # stops what it started when it fails
        self.url = self.server.url
        client = InferenceServerClient(self.url)
        try:
            await client.load_model("mlp", client_timeout=120)
        except BaseException:
            await self.server.stop()
            raise
        finally:
            await client.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            await self.server.stop()
