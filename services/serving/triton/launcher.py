"""Starts and stops the local `tritonserver` (from .triton-venv), or stands in for an existing one.

The binary comes from the nvidia-pytriton wheel, whose python backend stub embeds the system
libpython3.11 and ignores PYTHONPATH. Its interpreter takes its prefix from the first `python3` on
PATH, so the venv's bin goes first there (the venv's stdlib and site-packages, not pyenv's), and
MLMESH_TRITON_SYS_PATH names the site-packages for the model wrapper to put on sys.path itself.
Everything listens on 127.0.0.1 only, on free ports; Triton runs in its own process group so that a
stop also ends the backend stubs it spawned, and it dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from services.core.processes import die_with_parent_prefix
from services.core.errors import FailedPrecondition, Unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP_COMMAND = "make triton  (or: scripts/setup_triton.sh)"


class TritonSettings(BaseSettings):
    """`MLMESH_TRITON_*`. Empty `url`: start the binary from `venv`; set: use that server as it is."""

    model_config = SettingsConfigDict(env_prefix="MLMESH_TRITON_", extra="ignore")

    url: str = Field("", description="gRPC host:port of an existing Triton (production); empty starts one.")
    venv: Path = Field(REPO_ROOT / ".triton-venv", description="Triton's own environment (scripts/setup_triton.sh).")
    model_repository: Path | None = Field(
        None,
        description="Model repository Triton serves; default $MLMESH_HOME/triton/models. With `url`, the "
        "path where this host writes the repository that the remote Triton reads (shared storage).",
    )
    log_file: Path | None = Field(None, description="Local Triton's output; default $MLMESH_HOME/logs/triton.log.")
    start_timeout_s: float = Field(60.0, gt=0, description="How long the local Triton may take to become ready.")
    stop_grace_s: float = Field(10.0, ge=0, description="SIGTERM grace before SIGKILL (in-flight requests finish).")
    request_timeout_s: float = Field(30.0, gt=0, description="Deadline of one Triton inference request.")
    load_timeout_s: float = Field(120.0, gt=0, description="Deadline of loading one model.")
    http: bool = Field(False, description="Also serve Triton's HTTP endpoint (loopback, a free port).")
    metrics: bool = Field(False, description="Also serve Triton's Prometheus metrics (loopback, a free port).")


STAMP = ".mlmesh-triton-stamp"  # written by scripts/setup_triton.sh once the environment is complete


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel's server lies inside the venv."""

    venv: Path
    root: Path  # .../site-packages/pytriton/tritonserver

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def site_packages(self) -> Path:
        return self.root.parents[1]

    @property
    def libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def find_install(settings: TritonSettings) -> TritonInstall:
    """The set-up local install, or FailedPrecondition that says which command sets it up."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise FailedPrecondition(f"the pytriton binary runs on Linux x86_64 only, not {platform.platform()}")
    venv = settings.venv.expanduser().absolute()
    roots = sorted(venv.glob("lib/python3.*/site-packages/pytriton/tritonserver"))
    if not roots or not (venv / STAMP).is_file():
        raise FailedPrecondition(f"Triton is not set up in {venv}; run: {SETUP_COMMAND}")
    install = TritonInstall(venv, roots[-1])
    stub = install.root / "backends" / "python" / "triton_python_backend_stub"
    if not os.access(install.binary, os.X_OK) or not stub.is_file():
        raise FailedPrecondition(f"{install.root} is incomplete (binary or backend stub); run: {SETUP_COMMAND}")
    return install


def available(settings: TritonSettings | None = None) -> Availability:
    """Whether Triton can serve here, and why not; starts nothing."""
    settings = settings or TritonSettings()
    if settings.url:
        return Availability(True, f"an existing Triton at {settings.url} (reachability is checked on start)")
    try:
        install = find_install(settings)
    except FailedPrecondition as exc:
        return Availability(False, exc.message)
    return Availability(True, f"local tritonserver at {install.binary}")


class _Exited(Unavailable):
    """The local tritonserver ended during start-up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """`async with TritonServer(settings, model_repository=..., log_file=...) as triton: triton.url`."""

    def __init__(self, settings: TritonSettings, *, model_repository: Path, log_file: Path) -> None:
        self.settings = settings
        self.model_repository = Path(model_repository).absolute()
        self.log_file = Path(log_file).absolute()
        self.url = settings.url
        self.http_url = self.metrics_url = ""
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_settings(cls, settings: TritonSettings, home: Path) -> TritonServer:
        """Repository and log under `home` ($MLMESH_HOME) unless the settings name them."""
        return cls(
            settings,
            model_repository=settings.model_repository or home / "triton" / "models",
            log_file=settings.log_file or home / "logs" / "triton.log",
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def local(self) -> bool:
        return not self.settings.url

    async def start(self) -> None:
        """Start (local) or reach (url) Triton and wait until it is ready; on failure nothing is left running."""
        started = time.monotonic()
        install = find_install(self.settings) if self.local else None
        for attempt in range(3):
            if install is not None:
                self.model_repository.mkdir(parents=True, exist_ok=True)
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                self._spawn(install)
            try:
                await self._wait_ready(started + self.settings.start_timeout_s)
                break
            except BaseException as exc:
                await self.stop()
                # A free port can be taken between our probe and Triton's bind: try other ports.
                if not (isinstance(exc, _Exited) and "already in use" in self.log_tail() and attempt < 2):
                    raise
        self.startup_s = time.monotonic() - started

    def _spawn(self, install: TritonInstall) -> None:
        grpc_port = _free_port()
        cmd = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",  # mlmesh writes complete configs; saves a stub start per load
            f"--backend-directory={install.root / 'backends'}",
            f"--cache-directory={install.root / 'caches'}",
            # Unique shared-memory names: two servers on one machine must not share stub regions.
            f"--backend-config=python,shm-region-prefix-name=mlmesh{secrets.token_hex(4)}_",
            f"--exit-timeout-secs={max(1, int(self.settings.stop_grace_s))}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
        ]
        for kind, wanted in (("http", self.settings.http), ("metrics", self.settings.metrics)):
            port = _free_port() if wanted else 0
            cmd += [f"--{kind}-address=127.0.0.1", f"--{kind}-port={port}"] if wanted else [f"--allow-{kind}=false"]
            setattr(self, f"{kind}_url", f"127.0.0.1:{port}" if wanted else "")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{install.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["MLMESH_TRITON_SYS_PATH"] = str(install.site_packages)  # read by python_model/model.py
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.libs), env.get("LD_LIBRARY_PATH")]))
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [*die_with_parent_prefix(), *cmd], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.url = f"127.0.0.1:{grpc_port}"

    async def _wait_ready(self, deadline: float) -> None:
        client = InferenceServerClient(self.url)
        try:
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise _Exited(
                        f"tritonserver exited with status {self._proc.returncode} while starting:\n{self.log_tail()}"
                    )
                try:
                    if await client.is_server_ready(client_timeout=1.0):
                        return
                except InferenceServerException:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    where = f"see {self.log_file}:\n{self.log_tail()}" if self.local else "check MLMESH_TRITON_URL"
                    waited = self.settings.start_timeout_s
                    raise Unavailable(f"Triton at {self.url} not ready after {waited} s; {where}")
                await asyncio.sleep(0.05)
        finally:
            await client.close()

    def log_tail(self, lines: int = 20) -> str:
        """The end of Triton's log: what a start-up failure is reported with."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self) -> None:
        """SIGTERM (Triton unloads models, in-flight requests finish), then SIGKILL to the whole group."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, self.settings.stop_grace_s + 5)  # Triton's own exit timeout
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Triton if it hung, and any stub it left behind
        except ProcessLookupError:
            pass
        await asyncio.to_thread(proc.wait)

    async def __aenter__(self) -> TritonServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
