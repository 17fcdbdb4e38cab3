"""The servers bench/byom.py measures, each its own process on free loopback ports under the run's temporary
folder (their logs there too):

- mlmesh: registry, puller and serving (in-process executor, as bench/_servers.py's Mesh runs them); the
  models go in through the public client, `mlmesh.Mesh(...).push(...)`, and a session is deployed for each
  through `mlmesh.Mesh(...).classifier(...)`, with tokens minted by the mesh's own local issuer;
- MLServer 1.7.1 with its own runtimes, mlserver-xgboost (model.ubj) and mlserver-sklearn (a joblib pickle),
  from .bench-venvs/mlserver (bench/setup_mlserver.sh; exit 3 there: the reason is reported, the rest runs).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc.aio import InferenceServerClient

from _byom_models import BenchModel
from mlmesh.v1 import serving_pb2, serving_pb2_grpc
from _load import ROOT, free_port, python, spawn, stop, wait_until
from _servers import mesh_env
from services.core.auth.policy import ALL_SCOPES
from services.core.auth.tokens import TokenIssuer
from services.core.settings import AuthSettings, MeshSettings

MLSERVER_VENV = ROOT / ".bench-venvs" / "mlserver"
SERVICES = ("registry", "puller", "serving")


async def _healthy(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@dataclass
class Endpoint:
    """Where one model answers ModelInfer, and as what: the KServe model name, its input tensor, the
    probability output to ask for, the column of P(class 1) in it."""

    url: str
    model: str
    input_name: str
    datatype: str
    output: str
    column: int = 1
    note: str = ""


class MeshServices:
    """Registry + puller + serving processes; `token(service)` mints a token for that audience."""

    def __init__(self, root: Path, log_level: str) -> None:
        self.home = root / "mesh-home"
        self.ports = {name: free_port() for name in SERVICES}
        self.addresses = {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}
        self.env = mesh_env(root, self.home, self.ports, log_level)
        self.processes: dict[str, subprocess.Popen] = {}

    async def __aenter__(self) -> MeshServices:
        try:
            for name in SERVICES:
                log = self.home / f"{name}.log"
                process = self.processes[name] = spawn([python(), "-m", f"services.{name}"], log, self.env)
                await wait_until(lambda a=self.addresses[name]: _healthy(a), process, log, f"mlmesh {name}")
        except BaseException:
            await self.__aexit__()  # a half-started mesh must not outlive the bench
            raise
        self.issuer = TokenIssuer.from_settings(MeshSettings(home=self.home), AuthSettings())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in reversed(list(self.processes.values())):
            stop(process)

    def last_error(self) -> str:
        """A service that exited (with its log's last line), else the newest ERROR of the services' logs
        (JSON lines): its message and the exception's last line."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.home / f"{name}.log"
                tail = (log.read_text(errors="replace").strip().splitlines() or [""])[-1] if log.is_file() else ""
                return f"{name} exited with status {process.returncode}: {tail[-300:]}"
        found: tuple[str, str] = ("", "")
        for name in SERVICES:
            log = self.home / f"{name}.log"
            for line in log.read_text(errors="replace").splitlines() if log.is_file() else ():
                if '"level":"ERROR"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                last = (str(entry.get("exception") or "").strip().splitlines() or [""])[-1]
                found = max(found, (str(entry.get("time", "")), f"{name}: {entry.get('message')}: {last}"))
        return found[1]

    def token(self, service: str) -> str:
        return self.issuer.mint("bench", service, ALL_SCOPES)

    @property
    def serving_pid(self) -> int:
        return self.processes["serving"].pid

    def push_and_deploy(self, model: BenchModel) -> tuple[str, dict]:
        """Blocking (the public client is synchronous): push the model's file with its reference sample,
        deploy a classifier session for name@latest; (session id, the artifact's metadata)."""
        import mlmesh

        with mlmesh.Mesh(self.addresses, self.token) as mesh:
            artifact = mesh.push(model.push_file, name=f"byom-{model.name}", reference=model.reference,
                                 timeout_s=300)
            classifier = mesh.classifier(f"byom-{model.name}@latest", timeout_s=30)
            answer = classifier.classify(model.rows[:1].tolist())
            if not answer:
                raise RuntimeError(f"{model.name}: the deployed classifier answered nothing")
            return classifier.session_id, dict(artifact.metadata)

    async def endpoint(self, session_id: str) -> Endpoint:
        """The session's KServe tensors, from ModelMetadata: the input, and the [-1, C] FP32 output."""
        client = InferenceServerClient(self.addresses["serving"])
        try:
            meta = await client.get_model_metadata(session_id, headers=self.headers, as_json=True)
        finally:
            await client.close()
        (tensor,) = meta["inputs"]
        outputs = [o for o in meta["outputs"] if o["datatype"] == "FP32" and len(o.get("shape", [])) == 2]
        if len(outputs) != 1:
            raise RuntimeError(f"session {session_id}: no single FP32 [-1, C] output in {meta['outputs']}")
        return Endpoint(self.addresses["serving"], session_id, tensor["name"], tensor["datatype"],
                        outputs[0]["name"])

    async def batch_counts(self, session_id: str) -> dict[int, int]:
        """The session's batch sizes so far: {rows in a batch: batches}."""
        async with grpc.aio.insecure_channel(self.addresses["serving"]) as channel:
            session = await serving_pb2_grpc.ServingStub(channel).GetSession(
                serving_pb2.GetSessionRequest(session_id=session_id),
                metadata=tuple(self.headers.items()), timeout=10)
        return dict(session.stats.batch_size_counts)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token('serving')}"}


class MLServerRuntimes:
    """MLServer serving every model on its own runtime. `workers`: parallel_workers (MLServer's default is 1,
    a worker process per inference; 0 runs it in the server process); `batch`: adaptive batching
    (max_batch_size, max_batch_time in s), (0, 0) is MLServer's default (off); `env`: its process's extra
    environment."""

    def __init__(self, root: Path, models: list[BenchModel], label: str, *, workers: int,
                 batch: tuple[int, float] = (0, 0.0), env: dict[str, str] | None = None) -> None:
        self.label, self.models, self.env, self.process = label, models, env or {}, None
        self.folder = root / label.replace(" ", "-").replace(",", "")
        self.log = self.folder.with_suffix(".log")
        self.url = f"127.0.0.1:{free_port()}"
        for model in models:
            folder = self.folder / model.name
            folder.mkdir(parents=True)
            (folder / "model-settings.json").write_text(json.dumps({
                "name": model.name, "implementation": model.mlserver_runtime,
                "parameters": {"uri": str(model.mlserver_file)},  # absolute: MLServer does not resolve "./"
                "max_batch_size": batch[0], "max_batch_time": batch[1]}))
        (self.folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": free_port(), "grpc_port": int(self.url.rsplit(":", 1)[1]),
            "metrics_port": free_port(), "parallel_workers": workers, "debug": False}))

    @staticmethod
    def setup() -> str:
        """Builds (or finds up to date) MLServer's environment; "" when ready, else why not."""
        try:
            done = subprocess.run(["bash", str(ROOT / "bench" / "setup_mlserver.sh")], capture_output=True,
                                  text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return "bench/setup_mlserver.sh took over 15 minutes"
        if done.returncode == 0 and (MLSERVER_VENV / "bin" / "mlserver").is_file():
            return ""
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"bench/setup_mlserver.sh (exit {done.returncode}): {why}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def __aenter__(self) -> MLServerRuntimes:
        self.process = spawn([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(self.folder)], self.log,
                             self.env, cwd=self.folder)

        async def ready() -> bool:
            client = InferenceServerClient(self.url)
            try:
                return all([await client.is_model_ready(m.name, client_timeout=2) for m in self.models])
            finally:
                await client.close()

        try:
            await wait_until(ready, self.process, self.log, self.label, 180)
        except BaseException:
            stop(self.process)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop(self.process)

    def endpoint(self, model: BenchModel) -> Endpoint:
        return Endpoint(self.url, model.name, "input", "FP32", "predict_proba")


async def push_all(mesh: MeshServices, models: list[BenchModel]) -> dict[str, tuple[str, dict, float]]:
    """{model: (session id, artifact metadata, seconds to push + deploy)}, one after the other."""
    done = {}
    for model in models:
        began = time.monotonic()
        session, metadata = await asyncio.to_thread(mesh.push_and_deploy, model)
        done[model.name] = (session, metadata, time.monotonic() - began)
    return done
