"""Adapters for external model hubs: each fetches a source into a staging folder, verified."""

from services.puller.adapters.base import Fetched, FetchedFile, PullOptions

__all__ = ["Fetched", "FetchedFile", "PullOptions"]
