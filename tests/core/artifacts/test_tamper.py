"""Tamper cases, each at every load path, all refused before anything is deserialised.

Paths: "store" (a fresh LoadHandler load: nothing materialised, files fetched from the store),
"cached" (the artifact folder is already materialised in the local cache), and "cache_miss" (a
CacheHandler miss after the model had been cached and evicted). A malicious pickle whose unpickling
would create a canary file rides along; the canary must never appear, whatever path is tried.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import obstore
import pytest
import torch
from safetensors.torch import save_file

from services.core.artifacts.objectstore import content_key
from services.core.artifacts.save import SavedArtifact
from services.core.artifacts.signing import ArtifactSigner
from services.core.artifacts.sidecar import sidecar_text, write_sidecar
from services.core.errors import FailedPrecondition, IntegrityError
from services.core.settings import ArtifactSettings

from .conftest import Kit, publish_folder, state_dict

# (load path, object store backend): the fresh load from the store runs against S3 as well.
PATHS = (("store", "local"), ("store", "s3"), ("cached", "local"), ("cache_miss", "local"))
WEIGHTS, SIDECAR = "model.safetensors", "model.safetensors.sha256"


class _Payload:
    """Unpickling this calls open(canary, "w"): a real code-execution payload with a visible effect."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


def malicious_pickle(canary: Path) -> bytes:
    return pickle.dumps({"weight": _Payload(canary)}, protocol=2)


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary-pwned"
    yield path
    assert not path.exists(), "the malicious pickle ran"


def test_the_payload_is_live(tmp_path):
    # Control: plain pickle would run it, so "the canary never appears" below means something.
    other = tmp_path / "control-canary"
    pickle.loads(malicious_pickle(other)).get("weight").close()
    assert other.exists()


@dataclass
class Scenario:
    manifest: object
    bundle: bytes
    # Where the attack happens: in the object store (before a fresh load) or in the materialised folder.
    tamper_store: Callable[[], None] | None = None
    tamper_folder: Callable[[Path], None] | None = None
    allow_pickle: bool = False
    crafted: Path | None = None  # the hand-made folder of a crafted artifact
    expect: tuple[type, str] | None = None  # None: the load must succeed (and still never run pickle)
    checks: list = field(default_factory=list)


def blob_put(kit: Kit, sha256: str, data: bytes) -> None:
    obstore.put(kit.store.store.backend, content_key(sha256), data)


def blob_delete(kit: Kit, sha256: str) -> None:
    obstore.delete(kit.store.store.backend, content_key(sha256))


def file_tamper(kit: Kit, good: SavedArtifact, name: str, mutate: Callable[[bytes], bytes | None]):
    """The same mutation applied to the stored blob or to the materialised file (None deletes it)."""
    entry = good.manifest.file(name)

    def in_store():
        data = mutate(bytes(obstore.get(kit.store.store.backend, content_key(entry.sha256)).bytes()))
        blob_delete(kit, entry.sha256) if data is None else blob_put(kit, entry.sha256, data)

    def in_folder(folder: Path):
        data = mutate((folder / name).read_bytes())
        if data is None:
            (folder / name).unlink()
            in_store_missing()
        else:
            (folder / name).write_bytes(data)

    def in_store_missing():
        blob_delete(kit, entry.sha256)  # a missing file must not be recoverable anywhere

    return in_store, in_folder


def bloat(data: bytes) -> bytes:
    return struct.pack("<Q", 2**40) + data[8:]


async def scenario(
    name: str, kit: Kit, good: SavedArtifact, sibling: SavedArtifact, tmp: Path, canary: Path
) -> Scenario:
    flip = lambda d: d[:-5] + bytes([d[-5] ^ 0x01]) + d[-4:]  # noqa: E731 - same size, one bit
    mutations = {
        "byte_flip": (WEIGHTS, flip, IntegrityError, "sha256 mismatch for model.safetensors"),
        "truncation": (WEIGHTS, lambda d: d[:-7], IntegrityError, "size mismatch for model.safetensors"),
        "swapped_file": (WEIGHTS, lambda d: (sibling.folder / WEIGHTS).read_bytes(), IntegrityError,
                         "sha256 mismatch for model.safetensors"),
        "wrong_sidecar": (SIDECAR, lambda d: (sibling.folder / SIDECAR).read_bytes(), IntegrityError,
                          "sha256 mismatch for model.safetensors.sha256"),
        "missing_sidecar": (SIDECAR, lambda d: None, IntegrityError, "sidecar missing for model.safetensors"),
        "bloated_header": (WEIGHTS, bloat, IntegrityError, "sha256 mismatch for model.safetensors"),
        "pickle_in_place": (WEIGHTS, lambda d: malicious_pickle(canary), IntegrityError,
                            "mismatch for model.safetensors"),
    }
    if name in mutations:
        target, mutate, exc, message = mutations[name]
        if name == "swapped_file":
            assert (sibling.folder / WEIGHTS).stat().st_size == good.manifest.file(WEIGHTS).size  # truly same size
        in_store, in_folder = file_tamper(kit, good, target, mutate)
        return Scenario(good.manifest, good.signature, in_store, in_folder, expect=(exc, message))
    if name == "planted_pickle":
        def plant(folder: Path):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "pytorch_model.bin").write_bytes(malicious_pickle(canary))
            write_sidecar(folder / "pytorch_model.bin")
        return Scenario(good.manifest, good.signature, None, plant,
                        expect=(IntegrityError, "signature verification failed.*Extra files found"))
    if name == "signed_by_another_key":
        other = ArtifactSigner(ArtifactSettings(), tmp / "attacker-home")
        return Scenario(good.manifest, other.sign(good.folder),
                        expect=(IntegrityError, "signature verification failed.*Key mismatch"))
    if name == "bundle_for_other_content":
        return Scenario(good.manifest, sibling.signature,
                        expect=(IntegrityError, "signature verification failed.*Hash mismatch for 'model.safetensors'"))
    return await crafted(name, kit, tmp, canary)


async def crafted(name: str, kit: Kit, tmp: Path, canary: Path) -> Scenario:
    """Artifacts that are bad from birth yet carry a valid signature (a trusted puller signed a hostile repo)."""
    folder = tmp / f"crafted-{name}"
    folder.mkdir()
    weights = folder / WEIGHTS
    save_file(state_dict(9), str(weights))
    expect = None
    if name == "crafted_wrong_sidecar":
        (folder / SIDECAR).write_text(sidecar_text("0" * 64, WEIGHTS))
        expect = (IntegrityError, "sidecar mismatch for model.safetensors")
    elif name == "crafted_missing_sidecar":
        expect = (IntegrityError, "sidecar missing for model.safetensors")
    elif name == "crafted_bloated_header":
        weights.write_bytes(bloat(weights.read_bytes()))
        write_sidecar(weights)
        expect = (IntegrityError, "safetensors header too large for model.safetensors")
    elif name.startswith("pickle_"):
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(malicious_pickle(canary))
        write_sidecar(folder / "pytorch_model.bin")
        if name == "pickle_beside_safetensors":
            save_file(state_dict(9), str(weights))
            write_sidecar(weights)
        elif name == "pickle_refused":
            expect = (FailedPrecondition, "pickle weights refused for pytorch_model.bin")
        else:
            expect = (IntegrityError, "pickle weights rejected by weights_only loading for pytorch_model.bin")
    manifest, bundle = await publish_folder(kit, folder)
    return Scenario(manifest, bundle, allow_pickle=name == "pickle_weights_only_allowed", crafted=folder, expect=expect)


CASES = (
    "byte_flip", "truncation", "swapped_file", "wrong_sidecar", "missing_sidecar", "bloated_header",
    "pickle_in_place", "planted_pickle", "signed_by_another_key", "bundle_for_other_content",
    "crafted_wrong_sidecar", "crafted_missing_sidecar", "crafted_bloated_header",
    "pickle_refused", "pickle_weights_only_allowed", "pickle_beside_safetensors",
)


@pytest.mark.parametrize("path, kit", PATHS, indirect=["kit"])
@pytest.mark.parametrize("case", CASES)
async def test_tamper_is_refused_at_every_load_path(kit, tmp_path, canary, case, path):
    good = await kit.saver.save(state_dict(1), training_stats={"mean": [0.0], "std": [1.0]})
    sibling = await kit.saver.save(state_dict(2))  # same shapes: its files have the same sizes
    s = await scenario(case, kit, good, sibling, tmp_path, canary)
    loader = kit.fresh_loader(weights_only_pickle_allow=[s.manifest.artifact_id]) if s.allow_pickle else kit.loader
    folder = loader.folder_for(s.manifest.artifact_id)

    if path == "store":
        shutil.rmtree(folder, ignore_errors=True)
        if s.tamper_store:
            s.tamper_store()
        elif s.tamper_folder:
            s.tamper_folder(folder)  # an attacker who can write the cache before the first load
        attempt = loader.load(s.manifest, s.bundle)
    elif path == "cached":
        if s.crafted:
            shutil.copytree(s.crafted, folder)  # materialised earlier (materialise() itself would refuse some)
        assert folder.is_dir()
        if s.tamper_folder:
            s.tamper_folder(folder)
        attempt = loader.load(s.manifest, s.bundle)
    else:
        cache = kit.cache(max_entries=1, loader=loader)
        if not s.crafted:
            await cache.get(good.manifest, good.signature)
        await cache.get(sibling.manifest, sibling.signature)  # evicts the good one
        assert cache.keys() == [sibling.artifact_id]
        if s.tamper_folder:
            s.tamper_folder(folder)
        misses = cache.stats().misses
        attempt = cache.get(s.manifest, s.bundle)

    if s.expect is None:
        loaded = await attempt
        assert loaded.weights_format == "safetensors" and "weight" not in loaded.state_dict
    else:
        exc, message = s.expect
        with pytest.raises(exc, match=message):
            await attempt
        if path == "cache_miss":
            assert cache.stats().misses == misses + 1 and s.manifest.artifact_id not in cache.keys()
    assert not canary.exists()


async def test_a_tampered_cache_file_is_replaced_by_a_verified_copy_next_time(kit):
    good = await kit.saver.save(state_dict(1))
    weights = good.folder / WEIGHTS
    weights.write_bytes(bloat(weights.read_bytes()))
    with pytest.raises(IntegrityError, match="sha256 mismatch for model.safetensors"):
        await kit.loader.load(good.manifest, good.signature)
    assert not weights.exists()  # the bad copy is gone; the store's verified copy comes next
    loaded = await kit.loader.load(good.manifest, good.signature)
    assert torch.equal(loaded.state_dict["layer.bias"], state_dict(1)["layer.bias"])


async def test_no_partial_files_stay_in_an_artifact_folder(kit):
    good = await kit.saver.save(state_dict(1))
    shutil.rmtree(good.folder)
    entry = good.manifest.file(WEIGHTS)
    blob_put(kit, entry.sha256, b"\0" * entry.size)
    with pytest.raises(IntegrityError):
        await kit.loader.load(good.manifest, good.signature)
    assert not (good.folder / WEIGHTS).exists()
    leftovers = [p for p in kit.cache_root.rglob("*") if p.is_file() and p.name.endswith(".part")]
    assert leftovers == [] and os.listdir(good.folder) in ([SIDECAR], [])
