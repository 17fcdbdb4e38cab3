"""CacheHandler: LRU within byte and entry budgets, counters, verification on every miss, one load per id."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.artifacts.cache import CacheHandler
from services.core.artifacts.load import LoadedModel
from services.core.artifacts.manifest import parse_manifest
from services.core.auth.policy import REGISTRY_WRITE
from services.core.auth.principal import reset_principal, set_principal
from services.core.errors import IntegrityError, PermissionDenied
from services.core.lineage import LineageBus
from services.core.settings import MLSettings

from .conftest import principal, state_dict


def fake_manifest(index: int):
    return parse_manifest({"files": [{"path": "model.safetensors", "sha256": f"{index:064x}", "size": index}]})


class FakeLoader:
    """Stands in for the LoadHandler where only sizes matter; counts loads per id."""

    def __init__(self, sizes: dict[str, int], delay: float = 0.0, fail: bool = False) -> None:
        self.sizes, self.delay, self.fail = sizes, delay, fail
        self.loads: list[str] = []

    async def load(self, manifest, signature):
        self.loads.append(manifest.artifact_id)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise IntegrityError("sha256 mismatch for model.safetensors")
        size = self.sizes[manifest.artifact_id]
        return LoadedModel(manifest.artifact_id, {"w": torch.empty(size, dtype=torch.uint8)}, {}, "safetensors",
                           ("model.safetensors",), Path("."))


def cache_over(loader, max_bytes: int, max_entries: int) -> CacheHandler:
    ml = MLSettings(ml_cache_max_bytes=max_bytes, ml_cache_max_entries=max_entries)
    return CacheHandler(loader, ml, LineageBus())


@settings(max_examples=150, deadline=None)
@given(
    max_bytes=st.integers(0, 400),
    max_entries=st.integers(1, 5),
    sizes=st.lists(st.integers(0, 250), min_size=1, max_size=8),
    data=st.data(),
)
def test_random_loads_stay_within_budgets_and_evict_lru(max_bytes, max_entries, sizes, data):
    manifests = [fake_manifest(i + 1) for i in range(len(sizes))]
    loader = FakeLoader({m.artifact_id: size for m, size in zip(manifests, sizes)})
    sequence = data.draw(st.lists(st.integers(0, len(sizes) - 1), max_size=40))

    async def run():
        token = set_principal(principal())
        cache = cache_over(loader, max_bytes, max_entries)
        model: OrderedDict[str, int] = OrderedDict()  # the reference LRU
        evictions = 0
        for index in sequence:
            artifact_id, size = manifests[index].artifact_id, sizes[index]
            loaded = await cache.get(manifests[index], b"sig")
            assert loaded.nbytes == size
            if artifact_id in model:
                model.move_to_end(artifact_id)
            elif size <= max_bytes:
                while model and (len(model) >= max_entries or sum(model.values()) + size > max_bytes):
                    model.popitem(last=False)  # least recently used goes first
                    evictions += 1
                model[artifact_id] = size
            stats = cache.stats()
            assert stats.bytes_held <= max_bytes and stats.entries <= max_entries
            assert cache.keys() == list(model), "LRU order"
            assert stats.bytes_held == sum(model.values()) and stats.evictions == evictions
        assert cache.stats().misses == len(loader.loads)
        assert cache.stats().hits + cache.stats().misses == len(sequence)
        reset_principal(token)

    asyncio.run(run())


async def test_real_models_hit_miss_evict_and_every_miss_verifies(kit, recorder):
    saved = [await kit.saver.save(state_dict(i)) for i in range(3)]
    size = sum(t.nbytes for t in state_dict(0).values())
    cache = kit.cache(max_bytes=2 * size, max_entries=8)
    loads = lambda: recorder.ops().count("load")  # noqa: E731
    first = await cache.get(saved[0].manifest, saved[0].signature)
    assert await cache.get(saved[0].manifest, saved[0].signature) is first
    assert loads() == 1
    await cache.get(saved[1].manifest, saved[1].signature)
    await cache.get(saved[0].manifest, saved[0].signature)  # 0 becomes most recent
    await cache.get(saved[2].manifest, saved[2].signature)  # evicts 1 (least recent), by bytes
    assert cache.keys() == [saved[0].artifact_id, saved[2].artifact_id]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.entries, stats.bytes_held) == (2, 3, 1, 2, 2 * size)
    again = await cache.get(saved[1].manifest, saved[1].signature)  # a miss: loaded and verified again
    assert loads() == 4 and torch.equal(again.state_dict["layer.bias"], state_dict(1)["layer.bias"])


async def test_a_model_over_the_byte_budget_is_served_but_not_cached(kit):
    saved = await kit.saver.save(state_dict(0))
    cache = kit.cache(max_bytes=16)
    loaded = await cache.get(saved.manifest, saved.signature)
    assert loaded.nbytes > 16
    stats = cache.stats()
    assert (stats.entries, stats.bytes_held, stats.uncached, stats.misses) == (0, 0, 1, 1)


async def test_concurrent_gets_of_one_id_load_once():
    manifest = fake_manifest(1)
    loader = FakeLoader({manifest.artifact_id: 10}, delay=0.05)
    cache = cache_over(loader, 100, 4)
    results = await asyncio.gather(*(cache.get(manifest, b"sig") for _ in range(8)))
    assert len(loader.loads) == 1 and all(r is results[0] for r in results)
    assert (cache.stats().misses, cache.stats().hits) == (1, 7)


async def test_a_failed_load_reaches_every_waiter_and_is_retried_next_time():
    manifest = fake_manifest(1)
    loader = FakeLoader({manifest.artifact_id: 10}, delay=0.02, fail=True)
    cache = cache_over(loader, 100, 4)
    results = await asyncio.gather(*(cache.get(manifest, b"sig") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, IntegrityError) for r in results) and len(loader.loads) == 1
    loader.fail = False
    assert (await cache.get(manifest, b"sig")).nbytes == 10 and len(loader.loads) == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_load():
    manifest = fake_manifest(1)
    loader = FakeLoader({manifest.artifact_id: 10}, delay=0.05)
    cache = cache_over(loader, 100, 4)
    first = asyncio.ensure_future(cache.get(manifest, b"sig"))
    second = asyncio.ensure_future(cache.get(manifest, b"sig"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).nbytes == 10 and cache.keys() == [manifest.artifact_id]


async def test_get_needs_the_scope():
    manifest = fake_manifest(1)
    loader = FakeLoader({manifest.artifact_id: 10})
    cache = cache_over(loader, 100, 4)
    token = set_principal(principal({REGISTRY_WRITE}))
    try:
        with pytest.raises(PermissionDenied):
            await cache.get(manifest, b"sig")
    finally:
        reset_principal(token)
    assert loader.loads == []


async def test_evict_and_clear():
    manifests = [fake_manifest(i) for i in (1, 2)]
    cache = cache_over(FakeLoader({m.artifact_id: 5 for m in manifests}), 100, 4)
    for m in manifests:
        await cache.get(m, b"sig")
    assert cache.evict(manifests[0].artifact_id) and not cache.evict(manifests[0].artifact_id)
    cache.clear()
    assert cache.stats().entries == 0 and cache.stats().bytes_held == 0 and cache.stats().evictions == 2
