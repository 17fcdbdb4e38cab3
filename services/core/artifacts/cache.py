"""`CacheHandler`: an LRU of loaded models keyed by artifact id, within a byte and an entry budget.

- Size of an entry: the sum of its tensors' nbytes. The budgets (`ml_cache_max_bytes`,
  `ml_cache_max_entries`) are never exceeded: least recently used entries are evicted first.
- A model larger than the whole byte budget is served but not cached (counted in `uncached`):
  refusing it would turn a cache knob into an outage, and caching it would break the budget.
- A miss goes through the LoadHandler every time, so a model loaded from disk is verified again
  (hashes, sidecars, signature, safetensors header) even if it was cached before and evicted.
- Concurrent gets of one id share one load; the load runs in its own task, so a caller that gives up
  does not cancel it for the others.
- `get` checks the caller's scope every time; a hit emits no lineage (it is no lifecycle step of the
  artifact), a miss emits the LoadHandler's "load" event.
Everything runs on one event loop; the bookkeeping has no awaits between reads and writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

from services.core.artifacts.handlers import MLOpsHandler
from services.core.artifacts.load import LoadedModel, LoadHandler
from services.core.artifacts.manifest import Manifest
from services.core.auth.policy import REGISTRY_READ
from services.core.lineage import LineageBus
from services.core.settings import MLSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    uncached: int
    entries: int
    bytes_held: int
    max_bytes: int
    max_entries: int


class CacheHandler(MLOpsHandler):
    def __init__(
        self,
        loader: LoadHandler,
        settings: MLSettings,
        bus: LineageBus,
        *,
        scope: str = REGISTRY_READ,
        service: str = "",
    ) -> None:
        super().__init__(bus, service=service)
        self._loader = loader
        self.max_bytes = settings.ml_cache_max_bytes
        self.max_entries = settings.ml_cache_max_entries
        self.scope = scope
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()  # oldest first
        self._sizes: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Task[LoadedModel]] = {}
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._uncached = 0

    async def get(self, manifest: Manifest, signature: bytes) -> LoadedModel:
        """The loaded model for `manifest`; from memory on a hit, else verified and loaded by the LoadHandler."""
        self.authorize(self.scope)
        artifact_id = manifest.artifact_id
        model = self._entries.get(artifact_id)
        if model is not None:
            self._entries.move_to_end(artifact_id)
            self._hits += 1
            return model
        task = self._inflight.get(artifact_id)
        if task is not None:
            self._hits += 1  # another caller is loading it: share that load
        else:
            self._misses += 1
            task = asyncio.get_running_loop().create_task(self._load(manifest, signature))
            # Mark a failure seen even when every caller gave up, so it is not logged as unretrieved.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[artifact_id] = task
        return await asyncio.shield(task)

    def keys(self) -> list[str]:
        """Cached ids, least recently used first."""
        return list(self._entries)

    def evict(self, artifact_id: str) -> bool:
        if artifact_id not in self._entries:
            return False
        self._drop(artifact_id)
        self._evictions += 1
        return True

    def clear(self) -> None:
        for artifact_id in list(self._entries):
            self.evict(artifact_id)

    def stats(self) -> CacheStats:
        return CacheStats(
            self._hits, self._misses, self._evictions, self._uncached, len(self._entries), self._bytes,
            self.max_bytes, self.max_entries,
        )

    async def _load(self, manifest: Manifest, signature: bytes) -> LoadedModel:
        artifact_id = manifest.artifact_id
        try:
            model = await self._loader.load(manifest, signature)
            self._admit(artifact_id, model)
            return model
        finally:
            self._inflight.pop(artifact_id, None)

    def _admit(self, artifact_id: str, model: LoadedModel) -> None:
        size = model.nbytes
        if artifact_id in self._entries:
            self._drop(artifact_id)
        if size > self.max_bytes:
            self._uncached += 1
            log.warning("model %s (%d bytes) exceeds the cache budget of %d bytes: served, not cached",
                        artifact_id, size, self.max_bytes)
            return
        while self._entries and (len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes):
            self.evict(next(iter(self._entries)))
        self._entries[artifact_id] = model
        self._sizes[artifact_id] = size
        self._bytes += size

    def _drop(self, artifact_id: str) -> None:
        self._entries.pop(artifact_id)
        self._bytes -= self._sizes.pop(artifact_id)
