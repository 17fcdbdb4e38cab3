"""CompilerSettings (env prefix MLMESH_COMPILER_): where compiles work, where Triton entries go, limits.

Kept in this package until it moves beside the other settings in services/core/settings.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import MeshSettings


class CompilerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLMESH_COMPILER_", extra="ignore")

    work_dir: Path | None = Field(
        None, description="Scratch folders of running compiles; default $MLMESH_HOME/cache/compiler."
    )
    triton_repository: Path | None = Field(
        None,
        description="Triton model repository that each compile's entry is written to; default "
        "$MLMESH_HOME/triton/compiled. The entry is also part of the stored compiled artifact.",
    )
    write_triton_entries: bool = Field(True, description="Write each compile's entry into triton_repository.")
    default_max_batch_size: int = Field(64, ge=1, description="Dynamic batch upper bound when a request gives 0.")
    max_batch_size_limit: int = Field(4096, ge=1, description="Largest max_batch_size a request may ask for.")
    tensorrt_build_timeout_s: float = Field(1800.0, gt=0, description="Wall-clock limit of one TensorRT build.")
    tensorrt_python: str = Field(
        "", description="Interpreter that runs TensorRT builds in a subprocess; default this process's own."
    )

    def work_root(self, mesh: MeshSettings) -> Path:
        return (self.work_dir or mesh.home / "cache" / "compiler").expanduser().absolute()

    def triton_root(self, mesh: MeshSettings) -> Path | None:
        if not self.write_triton_entries:
            return None
        return (self.triton_repository or mesh.home / "triton" / "compiled").expanduser().absolute()

    def python(self) -> str:
        return self.tensorrt_python or sys.executable
