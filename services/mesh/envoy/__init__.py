"""Envoy, the mesh's front door: a config generated from the topology (`config`) and its process (`process`)."""

from services.mesh.envoy.config import EnvoyOptions, envoy_options, load_envoy_options, render_envoy_config

__all__ = ["EnvoyOptions", "envoy_options", "load_envoy_options", "render_envoy_config"]
