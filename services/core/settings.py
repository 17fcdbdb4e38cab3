"""Settings, one pydantic-settings class per concern, all read from `MLMESH_*` environment variables.

Composition roots build these once and pass them down; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ENV = SettingsConfigDict(env_prefix="MLMESH_", extra="ignore")


class MeshSettings(BaseSettings):
    """Where local state lives and which backends hold it."""

    model_config = _ENV

    home: Path = Field(Path(".mlmesh"), description="Local state: database, keys, objects, logs.")
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///$MLMESH_HOME/mlmesh.db. "
        "Production: postgresql+asyncpg://user@host/db.",
    )
    object_store_url: str = Field(
        "", description="Object store root; default a folder under $MLMESH_HOME, or s3://bucket/prefix."
    )
    topology_file: Path = Field(
        Path("deploy/topology.yaml"), description="Service addresses; a built-in map is used when absent."
    )

    @model_validator(mode="after")
    def _defaults_under_home(self) -> "MeshSettings":
        self.home = self.home.expanduser().absolute()
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.home / 'mlmesh.db'}"
        if not self.object_store_url:
            self.object_store_url = str(self.home / "objects")
        return self

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


class ServerSettings(BaseSettings):
    """How a gRPC service listens."""

    model_config = _ENV

    bind_host: str = Field("127.0.0.1", description="Listen address; nothing listens beyond loopback unless set.")
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest gRPC message in or out.")
    shutdown_grace_s: float = Field(5.0, ge=0, description="How long in-flight calls may finish on SIGTERM.")
    log_level: str = Field("INFO", description="Python logging level.")


class AuthSettings(BaseSettings):
    """Mesh tokens: ES256 JWTs whose audience is the called service."""

    model_config = _ENV

    issuer: str = Field("mlmesh", description="`iss` of mesh tokens.")
    issuer_key_file: Path | None = Field(
        None, description="PEM private key of the issuer; default $MLMESH_HOME/keys/issuer.pem (made on first run)."
    )
    token_ttl_s: int = Field(3600, ge=60, description="Lifetime of minted tokens.")
    clock_skew_s: int = Field(30, ge=0, description="Leeway for exp/nbf checks.")


class MLSettings(BaseSettings):
    """The seed's nine ml_* knobs."""

    model_config = _ENV

    ml_cache_max_bytes: int = Field(2 * 1024**3, ge=0, description="Byte budget of the loaded-model cache.")
    ml_cache_max_entries: int = Field(32, ge=1, description="Entry budget of the loaded-model cache.")
    ml_serving_max_batch_size: int = Field(32, ge=1, description="Default largest batch a session forms.")
    ml_serving_max_queue_delay_ms: float = Field(
        0.0, ge=0, description="Default extra wait for a fuller batch; 0 takes what waits."
    )
    ml_ood_z_threshold: float = Field(6.0, gt=0, description="OODGuard: largest |z| accepted per feature.")
    ml_hf_hub_offline: bool = Field(False, description="Serve only cached, pinned HuggingFace revisions.")
    ml_torchhub_offline: bool = Field(False, description="Serve only cached TorchHub weights.")
    mcp_ml_canonical_uri: str = Field(
        "http://127.0.0.1:8765/mcp/ml", description="The MCP gateway's canonical URI; tokens' `aud` must equal it."
    )
    mcp_ml_url: str = Field("", description="Where the MCP gateway is reached; default from the topology.")
