"""Where the console's built files are; the listen address comes from the topology like every service's."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE = "console"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ConsoleSettings(BaseSettings):
    """The console's static server. It holds no secret: operators sign in with a mesh token in the page."""

    model_config = SettingsConfigDict(env_prefix="MLMESH_CONSOLE_", extra="ignore")

    dist_dir: Path = Field(REPO_ROOT / "console" / "dist",
                           description="The built console (`make console` writes it: npm ci + npm run build).")
