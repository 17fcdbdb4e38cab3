"""SaveHandler -> store -> LoadHandler round trips, lineage, and policy refusals."""

from __future__ import annotations

import os
import shutil

import obstore
import pytest
import torch

from services.core.artifacts.load import select_weights
from services.core.artifacts.manifest import parse_manifest
from services.core.artifacts.sidecar import write_sidecar
from services.core.auth.policy import REGISTRY_READ, REGISTRY_WRITE
from services.core.auth.principal import reset_principal, set_principal
from services.core.errors import FailedPrecondition, IntegrityError, InvalidArgument, PermissionDenied

from .conftest import principal, publish_folder, state_dict

STATS = {"mean": [0.5, -1.0, 2.0], "std": [1.0, 0.25, 3.0]}
NAMES = ["price", "volume", "spread"]


def same_tensors(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


async def test_save_writes_a_signed_manifest_and_stores_every_file(kit, recorder):
    weights = state_dict()
    saved = await kit.saver.save(weights, architecture={"kind": "mlp", "layers": [4, 8, 1]},
                                 training_stats=STATS, feature_names=NAMES, source="train://run-7")
    manifest = saved.manifest
    assert saved.artifact_id == manifest.artifact_id
    assert [f.path for f in manifest.files] == ["model.safetensors", "model.safetensors.sha256"]
    assert (manifest.framework, manifest.format) == ("torch", "safetensors")
    assert manifest.metadata == {"architecture": {"kind": "mlp", "layers": [4, 8, 1]}, "training_stats": STATS,
                                 "feature_names": NAMES}
    assert saved.folder == kit.cache_root / saved.artifact_id.removeprefix("sha256:")
    weights_entry = manifest.file("model.safetensors")
    assert (saved.folder / "model.safetensors.sha256").read_text() == f"{weights_entry.sha256}  model.safetensors\n"
    kit.signer.verify(saved.folder, saved.signature)
    for entry in manifest.files:
        assert await kit.store.exists(entry.sha256)
    assert await kit.store.exists(saved.signature_object.sha256)
    assert not [p for p in kit.cache_root.iterdir() if p.name.startswith(".staging")]

    assert recorder.ops() == ["store", "store", "store", "save"]
    save_event = recorder.events[-1]
    assert save_event.actor == "test-operator"
    assert save_event.outputs == (f"artifact:{saved.artifact_id}",)
    assert save_event.inputs == ("source:train://run-7",)
    assert save_event.parameters["files"] == ["model.safetensors", "model.safetensors.sha256"]
    meta = await kit.store.lineage_metadata(weights_entry.sha256)
    assert meta["lineage"] == {"artifact_id": saved.artifact_id, "path": "model.safetensors", "source": "train://run-7"}


async def test_load_from_the_store_and_from_the_cache_folder(kit, recorder):
    weights = state_dict(1)
    saved = await kit.saver.save(weights, training_stats=STATS, feature_names=NAMES)
    shutil.rmtree(saved.folder)  # as on another machine: nothing materialised yet
    loaded = await kit.loader.load(saved.manifest, saved.signature, expected_id=saved.artifact_id)
    assert same_tensors(loaded.state_dict, weights)
    assert loaded.metadata["training_stats"] == STATS and loaded.weights_format == "safetensors"
    assert loaded.nbytes == sum(t.nbytes for t in weights.values())
    assert sorted(p.name for p in saved.folder.iterdir()) == ["model.safetensors", "model.safetensors.sha256"]
    again = await kit.loader.load(saved.manifest, saved.signature)  # materialised: verified on disk
    assert same_tensors(again.state_dict, weights)
    load_event = recorder.events[-1]
    assert load_event.operation == "load" and load_event.inputs == (f"artifact:{saved.artifact_id}",)
    assert load_event.parameters["format"] == "safetensors"


async def test_the_same_state_dict_saves_to_the_same_artifact(kit):
    first = await kit.saver.save(state_dict(2))
    second = await kit.saver.save(state_dict(2))
    assert first.artifact_id == second.artifact_id and first.folder == second.folder
    await kit.loader.load(second.manifest, second.signature)


async def test_tied_and_non_contiguous_tensors_are_saved(kit):
    shared = torch.randn(4, 4)
    weights = {"embed.weight": shared, "lm_head.weight": shared, "t": torch.randn(3, 5).t()}
    saved = await kit.saver.save(weights)
    loaded = await kit.loader.load(saved.manifest, saved.signature)
    assert same_tensors(loaded.state_dict, {k: v.contiguous() for k, v in weights.items()})


async def test_an_expected_id_pins_the_manifest(kit):
    saved = await kit.saver.save(state_dict(3))
    with pytest.raises(IntegrityError, match="artifact id mismatch"):
        await kit.loader.load(saved.manifest, saved.signature, expected_id="sha256:" + "0" * 64)


async def test_materialise_verifies_without_deserialising(kit, recorder):
    saved = await kit.saver.save(state_dict(4))
    shutil.rmtree(saved.folder)
    folder = await kit.loader.materialise(saved.manifest, saved.signature)
    assert folder == saved.folder and (folder / "model.safetensors").is_file()
    assert recorder.ops()[-1] == "materialise"


@pytest.mark.parametrize("kwargs, field", [
    ({"training_stats": {"mean": [1.0]}}, "training_stats"),
    ({"training_stats": {"mean": [1.0], "std": [1.0, 2.0]}}, "training_stats.std"),
    ({"training_stats": {"mean": [1.0], "std": [-1.0]}}, "training_stats.std"),
    ({"training_stats": {"mean": [1.0], "std": [1.0]}, "feature_names": ["a", "b"]}, "feature_names"),
    ({"feature_names": ["a", "a"]}, "feature_names"),
    ({"training_stats": {"mean": [float("nan")], "std": [1.0]}}, "training_stats.mean[0]"),
    ({"metadata": {"x": float("inf")}}, "x"),
])
async def test_bad_metadata_is_invalid_argument(kit, kwargs, field):
    with pytest.raises(InvalidArgument) as info:
        await kit.saver.save(state_dict(), **kwargs)
    assert (info.value.field or "").startswith(field)


async def test_bad_state_dicts_are_invalid_argument(kit):
    with pytest.raises(InvalidArgument):
        await kit.saver.save({})
    with pytest.raises(InvalidArgument) as info:
        await kit.saver.save({"w": [1, 2, 3]})
    assert info.value.field == "state_dict.w"


async def test_save_without_write_scope_writes_nothing(kit, recorder):
    token = set_principal(principal({REGISTRY_READ}))
    try:
        with pytest.raises(PermissionDenied):
            await kit.saver.save(state_dict())
    finally:
        reset_principal(token)
    assert [m for batch in obstore.list(kit.store.store.backend) for m in batch] == []
    assert not kit.cache_root.exists() or not any(kit.cache_root.iterdir())
    assert recorder.events == []


async def test_load_without_read_scope_fetches_nothing(kit, recorder):
    saved = await kit.saver.save(state_dict())
    shutil.rmtree(saved.folder)
    events = len(recorder.events)
    token = set_principal(principal({REGISTRY_WRITE}))
    try:
        with pytest.raises(PermissionDenied):
            await kit.loader.load(saved.manifest, saved.signature)
        with pytest.raises(PermissionDenied):
            await kit.loader.materialise(saved.manifest, saved.signature)
    finally:
        reset_principal(token)
    assert not saved.folder.exists() and len(recorder.events) == events


async def test_pickle_weights_load_weights_only_when_allowed(kit, tmp_path):
    folder = tmp_path / "pickle-artifact"
    folder.mkdir()
    weights = state_dict(5)
    torch.save(weights, folder / "pytorch_model.bin")
    write_sidecar(folder / "pytorch_model.bin")
    manifest, bundle = await publish_folder(kit, folder)
    with pytest.raises(FailedPrecondition, match="pickle weights refused for pytorch_model.bin"):
        await kit.loader.load(manifest, bundle)
    loader = kit.fresh_loader(weights_only_pickle_allow=[manifest.artifact_id])
    loaded = await loader.load(manifest, bundle)
    assert loaded.weights_format == "pickle" and same_tensors(loaded.state_dict, weights)


def test_safetensors_is_preferred_over_pickle():
    files = [{"path": p, "sha256": "a" * 64, "size": 1} for p in
             ("pytorch_model.bin", "pytorch_model.bin.sha256", "model.safetensors", "model.safetensors.sha256")]
    assert select_weights(parse_manifest({"files": files})) == ("safetensors", ("model.safetensors",))
    only_pickle = parse_manifest({"files": files[:2]})
    assert select_weights(only_pickle) == ("pickle", ("pytorch_model.bin",))
    with pytest.raises(FailedPrecondition, match="no weights file"):
        select_weights(parse_manifest({"files": [{"path": "README.md", "sha256": "a" * 64, "size": 1}]}))


async def test_loaded_tensors_are_the_verified_bytes_not_a_live_file_mapping(kit):
    # safetensors' load_file maps the file: an in-place write after verification would change the model.
    weights = state_dict(6)
    saved = await kit.saver.save(weights)
    loaded = await kit.loader.load(saved.manifest, saved.signature)
    path = saved.folder / "model.safetensors"
    with open(path, "r+b") as fh:
        fh.seek(-64, os.SEEK_END)
        fh.write(b"\x7f" * 64)
        fh.truncate(path.stat().st_size - 8)
    assert same_tensors(loaded.state_dict, weights)


async def test_a_file_changed_between_verification_and_reading_is_refused(kit, monkeypatch):
    from services.core.artifacts import load as load_module

    saved = await kit.saver.save(state_dict(7))
    real = load_module.check_safetensors

    def swap_after_checks(path, **kwargs):
        header = real(path, **kwargs)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))  # the race: after every check, before the read
        return header

    monkeypatch.setattr(load_module, "check_safetensors", swap_after_checks)
    with pytest.raises(IntegrityError, match="sha256 mismatch for model.safetensors: it changed after verification"):
        await kit.loader.load(saved.manifest, saved.signature)
