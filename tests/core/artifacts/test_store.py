"""The object store and StoreHandler: one suite, run on a local folder and on S3 (moto on loopback)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import obstore
import pytest

from services.core.artifacts.objectstore import ObjectStore, content_key
from services.core.artifacts.store import StoreHandler
from services.core.auth.policy import REGISTRY_READ
from services.core.auth.principal import reset_principal, set_principal
from services.core.errors import IntegrityError, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.core.settings import ObjectStoreSettings

from .conftest import MIN_CHUNK, principal


@pytest.fixture
def handler(object_store, bus) -> StoreHandler:
    return StoreHandler(object_store, bus, service="test")


def keys(store: ObjectStore) -> list[str]:
    return sorted(meta["path"] for batch in obstore.list(store.backend) for meta in batch)


def no_stray_files(folder: Path) -> bool:
    return all(not name.endswith(".part") for name in os.listdir(folder))


async def test_put_bytes_is_content_addressed_with_lineage_sidecar(handler, recorder, tmp_path):
    data = b"weights" * 100
    stored = await handler.put_bytes(data, lineage={"artifact_id": "sha256:" + "a" * 64, "path": "w.bin"})
    digest = hashlib.sha256(data).hexdigest()
    assert (stored.key, stored.sha256, stored.size) == (f"sha256/{digest}", digest, len(data))
    assert await handler.exists(digest)
    assert not await handler.exists("0" * 64)
    meta = await handler.lineage_metadata(digest)
    assert meta["lineage"]["path"] == "w.bin" and meta["stored_by"] == "test-operator" and meta["size"] == len(data)
    [event] = recorder.events
    assert event.operation == "store" and event.actor == "test-operator" and event.service == "test"
    assert event.outputs == (f"object:sha256:{digest}",)
    assert event.inputs == ("artifact:sha256:" + "a" * 64,)
    assert event.parameters["size"] == len(data)
    dest = tmp_path / "out" / "w.bin"
    await handler.fetch(digest, dest, expected_size=len(data))
    assert dest.read_bytes() == data


async def test_same_bytes_again_is_a_noop_and_keeps_first_provenance(handler, recorder):
    first = await handler.put_bytes(b"abc", lineage={"source": "hf://org/one"})
    again = await handler.put_bytes(b"abc", lineage={"source": "hf://org/two"})
    assert first == again
    assert (await handler.lineage_metadata(first.sha256))["lineage"]["source"] == "hf://org/one"
    assert recorder.ops() == ["store", "store"]
    assert recorder.events[1].inputs == ("source:hf://org/two",)


async def test_different_bytes_under_an_existing_key_are_refused(handler, object_store):
    data = b"original bytes"
    digest = hashlib.sha256(data).hexdigest()
    # Something else already sits under that content key (a tampered or corrupt blob).
    obstore.put(object_store.backend, content_key(digest), b"tampered bytes")
    with pytest.raises(IntegrityError, match="already holds different bytes"):
        await handler.put_bytes(data)
    obstore.put(object_store.backend, content_key(digest), b"other size, tampered")
    with pytest.raises(IntegrityError, match="already holds different bytes"):
        await handler.put_bytes(data)


async def test_put_create_refuses_overwrite_at_the_backend(object_store):
    await object_store.put_bytes(b"one")
    assert await object_store.put_once("meta/x.json", b"{}") is True
    assert await object_store.put_once("meta/x.json", b"{\"other\":1}") is False
    assert await object_store.get_bytes("meta/x.json") == b"{}"


async def test_put_file_small_and_large(handler, object_store, tmp_path, monkeypatch):
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1000))
    stored = await handler.put_file(small, lineage={"path": "small.bin"})
    assert stored.sha256 == hashlib.sha256(small.read_bytes()).hexdigest()

    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(2 * MIN_CHUNK + 12345))
    digest = hashlib.sha256(large.read_bytes()).hexdigest()
    # A large file streams in parts: reading it whole would be a bug (multi-GB weights).
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} read whole into memory"))
    stored = await handler.put_file(large)
    monkeypatch.undo()
    assert stored.sha256 == digest and stored.size == large.stat().st_size
    assert not [k for k in keys(object_store) if "staging/" in k], "staging object left behind"
    again = await handler.put_file(large)  # same content again: verified no-op
    assert again == stored
    dest = tmp_path / "back" / "large.bin"
    await handler.fetch(digest, dest, expected_size=stored.size)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest


async def test_put_file_checks_the_expected_digest(handler, object_store, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"content")
    with pytest.raises(IntegrityError, match="sha256 mismatch for f.bin"):
        await handler.put_file(path, expected_sha256="0" * 64)
    assert keys(object_store) == []


@pytest.mark.parametrize("tamper", ["flip", "truncate", "grow"])
async def test_fetch_verifies_and_never_leaves_a_partial_file(handler, object_store, tmp_path, tamper):
    data = os.urandom(4096)
    stored = await handler.put_bytes(data)
    bad = {"flip": data[:100] + bytes([data[100] ^ 1]) + data[101:], "truncate": data[:-1], "grow": data + b"x"}[tamper]
    obstore.put(object_store.backend, stored.key, bad)
    dest_dir = tmp_path / "dest"
    with pytest.raises(IntegrityError, match=r"(sha256|size) mismatch for w\.bin"):
        await handler.fetch(stored.sha256, dest_dir / "w.bin", expected_size=len(data), label="w.bin")
    assert not (dest_dir / "w.bin").exists()
    assert no_stray_files(dest_dir)
    # Without a recorded size the hash still catches it.
    with pytest.raises(IntegrityError, match="mismatch"):
        await handler.fetch(stored.sha256, dest_dir / "w.bin")
    assert not (dest_dir / "w.bin").exists() and no_stray_files(dest_dir)


async def test_fetch_missing_is_not_found(handler, tmp_path):
    with pytest.raises(NotFound):
        await handler.fetch("1" * 64, tmp_path / "x")
    with pytest.raises(InvalidArgument):
        await handler.fetch("not-a-digest", tmp_path / "x")


async def test_a_caller_without_the_scope_writes_nothing(handler, object_store, recorder, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"content")
    token = set_principal(principal({REGISTRY_READ}))
    try:
        with pytest.raises(PermissionDenied):
            await handler.put_file(path)
        with pytest.raises(PermissionDenied):
            await handler.put_bytes(b"content")
        assert await handler.exists(hashlib.sha256(b"content").hexdigest()) is False
    finally:
        reset_principal(token)
    token = set_principal(None)
    try:
        with pytest.raises(Unauthenticated):
            await handler.put_bytes(b"content")
        with pytest.raises(Unauthenticated):
            await handler.exists("0" * 64)
    finally:
        reset_principal(token)
    assert keys(object_store) == [] and recorder.events == []


async def test_lineage_must_be_json(handler):
    with pytest.raises(InvalidArgument) as info:
        await handler.put_bytes(b"x", lineage={"when": object()})
    assert info.value.field == "lineage"


def test_from_url_forms(tmp_path):
    store = ObjectStore.from_url(f"file://{tmp_path}/a/b")
    assert (tmp_path / "a" / "b").is_dir() and store.url == str(tmp_path / "a" / "b")
    with pytest.raises(InvalidArgument) as info:
        ObjectStore.from_url("ftp://host/x")
    assert info.value.field == "object_store_url"


async def test_meta_sidecar_is_json_with_sorted_keys(handler, object_store):
    stored = await handler.put_bytes(b"x", lineage={"b": 1, "a": 2})
    raw = await object_store.get_bytes(f"meta/{stored.sha256}.json")
    assert json.loads(raw)["lineage"] == {"a": 2, "b": 1}


def test_plain_http_is_allowed_only_for_loopback_endpoints():
    from services.core.artifacts.objectstore import _is_loopback

    assert _is_loopback("http://127.0.0.1:9000") and _is_loopback("http://localhost:9000")
    assert _is_loopback("http://[::1]:9000")
    assert not _is_loopback("http://10.0.0.5:9000") and not _is_loopback("http://minio.internal:9000")
    store = ObjectStore.from_url("s3://some-bucket", s3_options=ObjectStoreSettings(s3_endpoint="http://127.0.0.1:1"))
    assert store.url == "s3://some-bucket"
