"""Typed async clients of mesh services, for other services (never for the service itself)."""

from services.core.clients.registry import RegistryClient, lineage_sink

__all__ = ["RegistryClient", "lineage_sink"]
