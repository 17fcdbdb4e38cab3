"""Artifact loading: safetensors vs torch.load, and CacheHandler hit vs miss, side by side in one run.

For each size the same state dict is written once as `.safetensors` and once with `torch.save`; both are
read back from a warm page cache (`safetensors.torch.load_file` vs `torch.load(weights_only=True)`).
`load_file` maps the file lazily, so it is also timed with every byte read once ("+ read"), and the
LoadHandler's own path (read into private memory, sha256, tensors as views: weights.py) is shown too.
Then a model is saved through the SaveHandler into a local store, and the CacheHandler is timed on a
miss (LoadHandler: sha256 of every file on disk, signature verification, sidecar, header guard, load)
and on a hit. Prints medians and the ratios.

    .venv/bin/python bench/artifacts.py [--sizes 1,16,128] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.core.artifacts.cache import CacheHandler  # noqa: E402
from services.core.artifacts.load import LoadHandler  # noqa: E402
from services.core.artifacts.manifest import ManifestFile  # noqa: E402
from services.core.artifacts.objectstore import ObjectStore, sha256_file  # noqa: E402
from services.core.artifacts.save import SaveHandler  # noqa: E402
from services.core.artifacts.signing import ArtifactSigner  # noqa: E402
from services.core.artifacts.store import StoreHandler  # noqa: E402
from services.core.auth.policy import ALL_SCOPES  # noqa: E402
from services.core.artifacts.weights import read_verified, safetensors_from_buffer  # noqa: E402
from services.core.auth.principal import Principal, set_principal  # noqa: E402
from services.core.lineage import LineageBus  # noqa: E402
from services.core.settings import ArtifactSettings, MLSettings  # noqa: E402

MIB = 1024 * 1024


def state_dict(mib: int) -> dict[str, torch.Tensor]:
    """Eight float32 tensors adding up to `mib` MiB (a few layers, as a small model has)."""
    per_tensor = mib * MIB // 4 // 8
    return {f"layers.{i}.weight": torch.randn(per_tensor) for i in range(8)}


def median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm: page cache and allocator
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def median_async_s(
    fn: Callable[[], Awaitable[object]], repeat: int, before: Callable[[], None] = lambda: None
) -> float:
    samples = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def read_all(tensors: dict[str, torch.Tensor]) -> None:
    for tensor in tensors.values():
        tensor.sum()


def verified_load(path: Path, entry: ManifestFile) -> dict[str, torch.Tensor]:
    return safetensors_from_buffer(read_verified(path, entry), max_header_bytes=100 * MIB, label=path.name)


def format_rows(sizes: list[int], repeat: int, work: Path) -> list[tuple[str, ...]]:
    rows = []
    for mib in sizes:
        weights = state_dict(mib)
        st_path, pt_path = work / f"m{mib}.safetensors", work / f"m{mib}.pt"
        save_file(weights, str(st_path))
        torch.save(weights, pt_path)
        del weights
        digest, size = sha256_file(st_path)
        entry = ManifestFile(path=st_path.name, sha256=digest, size=size)
        st = median_s(lambda: load_file(str(st_path)), repeat)
        pt = median_s(lambda: torch.load(pt_path, weights_only=True), repeat)
        st_read = median_s(lambda: read_all(load_file(str(st_path))), repeat)
        pt_read = median_s(lambda: read_all(torch.load(pt_path, weights_only=True)), repeat)
        ours = median_s(lambda: read_all(verified_load(st_path, entry)), repeat)
        rows.append((f"{mib} MiB", st, pt, st_read, pt_read, ours))
    return rows


async def cache_rows(sizes: list[int], repeat: int, work: Path) -> list[tuple[str, float, float]]:
    set_principal(Principal("bench", frozenset(ALL_SCOPES), "serving", "bench", time.time() + 3600))
    bus, settings, home = LineageBus(), ArtifactSettings(), work / "home"
    store = StoreHandler(ObjectStore.from_url(str(work / "objects")), bus)
    signer = ArtifactSigner(settings, home)
    saver = SaveHandler(store, signer, settings.cache_root(home), bus)
    loader = LoadHandler(store, signer, settings, settings.cache_root(home), bus)
    cache = CacheHandler(loader, MLSettings(ml_cache_max_bytes=4 * 1024 * MIB, ml_cache_max_entries=8), bus)
    rows = []
    for mib in sizes:
        saved = await saver.save(state_dict(mib))
        await cache.get(saved.manifest, saved.signature)  # warm the page cache
        miss = await median_async_s(lambda: cache.get(saved.manifest, saved.signature), repeat,
                                    before=lambda: cache.evict(saved.artifact_id))
        await cache.get(saved.manifest, saved.signature)
        hit = await median_async_s(lambda: cache.get(saved.manifest, saved.signature), max(repeat, 50))
        rows.append((f"{mib} MiB", hit, miss))
    return rows


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,128", help="state dict sizes in MiB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    console = Console(width=max(100, Console().width))
    with tempfile.TemporaryDirectory(prefix="mlmesh-bench-") as tmp:
        work = Path(tmp)
        loads = format_rows(sizes, args.repeat, work)
        table = Table(title="load only (safetensors maps lazily), warm page cache, median")
        for column in ("size", "safetensors", "torch.load", "safetensors / torch.load"):
            table.add_column(column, justify="right")
        for size, st, pt, *_ in loads:
            table.add_row(size, ms(st), ms(pt), f"{st / pt:.2f}x")
        console.print(table)
        table = Table(title="load + read every tensor once; 'verified' = LoadHandler's read + sha256 + views")
        for column in ("size", "safetensors", "torch.load", "safetensors / torch.load", "verified",
                       "verified / torch.load"):
            table.add_column(column, justify="right")
        for size, _, _, st_read, pt_read, ours in loads:
            table.add_row(size, ms(st_read), ms(pt_read), f"{st_read / pt_read:.2f}x",
                          ms(ours), f"{ours / pt_read:.2f}x")
        console.print(table)

        caches = asyncio.run(cache_rows(sizes, args.repeat, work))
        table = Table(title="CacheHandler.get: hit vs miss (miss = verify hashes + signature + header, then load)")
        for column in ("size", "hit", "miss", "hit / miss", "miss / hit"):
            table.add_column(column, justify="right")
        for size, hit, miss in caches:
            table.add_row(size, ms(hit), ms(miss), f"{hit / miss:.6f}x", f"{miss / hit:,.0f}x")
        console.print(table)


if __name__ == "__main__":
    main()
