"""The loaded-model cache's figures as Prometheus series, read from `CacheHandler.stats()` at scrape time:
the cache's own counters are the source, so a hit costs nothing more than it did."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.core.artifacts.cache import CacheHandler, CacheStats


class CacheCollector(Collector):
    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()  # plain int reads: safe from the HTTP server's thread
        yield CounterMetricFamily("mlmesh_cache_hits", "Loaded-model cache hits (a shared in-flight load "
                                  "counts as a hit).", value=s.hits)
        yield CounterMetricFamily("mlmesh_cache_misses", "Loaded-model cache misses (each one a verified load).",
                                  value=s.misses)
        yield CounterMetricFamily("mlmesh_cache_evictions", "Entries evicted to stay within the budgets.",
                                  value=s.evictions)
        yield CounterMetricFamily("mlmesh_cache_uncached_loads", "Models larger than the whole byte budget: "
                                  "served, not cached.", value=s.uncached)
        yield GaugeMetricFamily("mlmesh_cache_entries", "Models held in the cache.", value=s.entries)
        yield GaugeMetricFamily("mlmesh_cache_bytes", "Bytes of tensors held in the cache.", value=s.bytes_held)
        yield GaugeMetricFamily("mlmesh_cache_max_bytes", "The cache's byte budget (ml_cache_max_bytes).",
                                value=s.max_bytes)
        yield GaugeMetricFamily("mlmesh_cache_max_entries", "The cache's entry budget (ml_cache_max_entries).",
                                value=s.max_entries)


def register_cache(registry: CollectorRegistry, cache: CacheHandler) -> None:
    registry.register(CacheCollector(cache.stats))
