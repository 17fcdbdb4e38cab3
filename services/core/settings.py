"""Settings, one pydantic-settings class per concern, all read from `MLMESH_*` environment variables.

Composition roots build these once and pass them down; nothing reads the environment at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
    advertise_host: str = Field(
        "", description="The address other processes reach this one at: it names a serving replica in its "
        "answers, and HaltAll leaves it out of the DNS answers when it looks for the other replicas. Empty: the "
        "bind host, or, when that is a wildcard (0.0.0.0, ::), what this machine's hostname resolves to. On "
        "Kubernetes: the pod IP (downward API).")
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest gRPC message in or out.")
    shutdown_grace_s: float = Field(5.0, ge=0, description="How long in-flight calls may finish on SIGTERM.")
    log_level: str = Field("INFO", description="Python logging level.")
    access_log: Literal["all", "control"] = Field(
        "control",
        description="Which calls get an access log line: all = every call; control = every call except the "
        "successful ones of a service's high-rate methods (inference), which metrics and traces count instead. "
        "Failed calls are always logged.",
    )


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


class ObjectStoreSettings(BaseSettings):
    """How the object store is reached (S3-compatible stores) and how large files travel."""

    model_config = _ENV

    s3_endpoint: str = Field("", description="S3 API endpoint, e.g. http://127.0.0.1:9000; empty means AWS.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: str = Field("", description="S3 access key id; empty uses the AWS environment/instance chain.")
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="S3 secret access key.")
    s3_session_token: SecretStr = Field(SecretStr(""), description="S3 session token, for temporary credentials.")
    s3_allow_http: bool = Field(
        False, description="Allow a plain-http endpoint beyond loopback (loopback endpoints are always allowed)."
    )
    s3_copy_if_not_exists: str = Field(
        "multipart",
        description="How the store refuses a copy onto an existing key: 'multipart' (AWS S3, MinIO) or "
        "'header:NAME:VALUE' (e.g. Cloudflare R2).",
    )
    upload_chunk_bytes: int = Field(
        8 * 1024 * 1024, ge=5 * 1024 * 1024, description="Multipart part size; larger files stream in parts."
    )
    upload_concurrency: int = Field(4, ge=1, le=64, description="Parts uploaded at once.")


class ArtifactSettings(BaseSettings):
    """Artifact signing, the local artifact cache, and what the loader accepts."""

    model_config = _ENV

    signing_mode: Literal["local_key", "sigstore"] = Field(
        "local_key", description="local_key: EC P-256 key under $MLMESH_HOME; sigstore: keyless (needs network)."
    )
    signing_key_file: Path | None = Field(
        None, description="PEM private key; default $MLMESH_HOME/keys/signing.pem (made on first use, 0600)."
    )
    trusted_public_keys: list[Path] = Field(
        default_factory=list, description="Extra PEM public keys whose signatures are accepted (other signers)."
    )
    sigstore_identity: str = Field("", description="sigstore mode: the signer identity verification expects.")
    sigstore_oidc_issuer: str = Field("", description="sigstore mode: the OIDC issuer verification expects.")
    sigstore_use_staging: bool = Field(False, description="sigstore mode: use the staging instance.")
    cache_dir: Path | None = Field(
        None, description="Materialised artifacts; default $MLMESH_HOME/cache/artifacts."
    )
    weights_only_pickle_allow: list[str] = Field(
        default_factory=list,
        description="Artifact ids (sha256:<hex>) whose pickle weights may be loaded with torch.load(weights_only=True).",
    )
    safetensors_max_header_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest safetensors header accepted (a bloated one is refused)."
    )

    @model_validator(mode="after")
    def _check_allow_list(self) -> "ArtifactSettings":
        for index, artifact_id in enumerate(self.weights_only_pickle_allow):
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", artifact_id):
                raise ValueError(f"weights_only_pickle_allow[{index}] must be sha256:<64 hex digits>")
        return self

    def signing_key_path(self, home: Path) -> Path:
        return Path(self.signing_key_file).expanduser() if self.signing_key_file else home / "keys" / "signing.pem"

    def cache_root(self, home: Path) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else home / "cache" / "artifacts"


class PullerSettings(BaseSettings):
    """The puller: where downloads are cached, which hub and mirror it talks to, what it accepts."""

    model_config = SettingsConfigDict(env_prefix="MLMESH_PULLER_", extra="ignore")

    cache_dir: Path | None = Field(
        None, description="Download cache volume; default $MLMESH_HOME/cache (hf/ and torchhub/ below it)."
    )
    hf_endpoint: str = Field(
        "", description="Hugging Face Hub URL; default huggingface_hub's (HF_ENDPOINT, else huggingface.co)."
    )
    torchhub_mirror_url: str = Field(
        "", description="When set, pinned TorchHub weight URLs are fetched from this scheme://host[/prefix] instead."
    )
    torchhub_allowlist_file: Path | None = Field(
        None, description="Operator TorchHub allow-list (YAML/JSON list), added to the built-in one."
    )
    max_file_bytes: int = Field(20 * 1024**3, ge=1, description="Largest single file a pull accepts.")
    download_timeout_s: float = Field(60.0, gt=0, description="Network timeout per request.")
    max_push_bytes: int = Field(4 * 1024**3, ge=1, description="Largest push (all its files together) accepted.")
    inspect_timeout_s: float = Field(600.0, gt=0, description="Longest a pushed model's inspection may run.")
    inspect_memory_bytes: int = Field(
        8 * 1024**3, ge=256 * 1024**2, description="Address-space limit of the subprocess that inspects a push."
    )

    def cache_root(self, mesh: MeshSettings) -> Path:
        return (self.cache_dir or mesh.home / "cache").expanduser().absolute()


class ObservabilitySettings(BaseSettings):
    """Metrics, traces and logs (services/core/observability)."""

    model_config = _ENV

    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics and record them on every call.")
    metrics_host: str = Field("127.0.0.1", description="Where /metrics listens; loopback unless set.")
    metrics_port: int | None = Field(
        None, ge=0, lt=65536, description="/metrics port; default the service's `metrics_port` in the topology."
    )
    tracing_enabled: bool = Field(True, description="Record OpenTelemetry spans and carry W3C traceparent.")
    otlp_endpoint: str = Field("", description="OTLP/gRPC collector, e.g. http://127.0.0.1:4317; empty exports nothing.")
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="Share of new traces that are sampled.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line (service, request id, trace id, subject); text: plain."
    )
