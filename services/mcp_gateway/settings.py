"""Settings of the MCP gateway (`MLMESH_MCP_*`); the canonical URI itself is `MLSettings.mcp_ml_canonical_uri`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE = "mlmesh-ml-mcp"          # topology name, and the subject of the gateway's own mesh tokens
WELL_KNOWN = "/.well-known/oauth-protected-resource"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLMESH_MCP_", extra="ignore")

    authorization_servers: list[str] = Field(
        default_factory=list,
        description="RFC 9728 `authorization_servers`; empty means [the mesh issuer, MLMESH_ISSUER].",
    )
    token_issuer: str = Field("", description="`iss` agent tokens must carry; empty means the mesh issuer.")
    jwks_url: str = Field(
        "", description="Verify agent tokens against this JWKS (ES256 keys); empty means the local mesh issuer key."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Extra Host values accepted (the canonical and bound host:port always are)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Extra Origin values accepted (the canonical origin always is)."
    )
    underscore_names: bool = Field(
        False, description="Also list every tool as data_ml_* for clients that reject dots (both are always callable)."
    )
    max_request_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest MCP request body.")
    call_timeout_s: float = Field(30.0, gt=0, description="Deadline of each unary backend call.")
    operation_timeout_s: float = Field(3600.0, gt=0, description="How long a tool follows a pull/compile/skill run.")
    audit_file: Path | None = Field(
        None, description="JSON-lines audit trail; default $MLMESH_HOME/logs/mcp_audit.jsonl."
    )
    token: SecretStr = Field(
        SecretStr(""), description="stdio only: the agent's bearer token (MLMESH_MCP_TOKEN), checked like HTTP ones."
    )


def resource_path(canonical_uri: str) -> str:
    """The path the MCP endpoint is served at: the canonical URI's own path (e.g. /mcp/ml)."""
    return urlsplit(canonical_uri).path or "/"


def metadata_url(canonical_uri: str) -> str:
    """RFC 9728 §3.1: the well-known segment goes between the origin and the resource's path."""
    parts = urlsplit(canonical_uri)
    path = parts.path if parts.path != "/" else ""
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{path}"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
