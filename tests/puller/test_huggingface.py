"""HuggingFaceAdapter against the local hub: pinning, verification, tampering, pickle, offline, tokens."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.core.errors import FailedPrecondition, IntegrityError, NotFound, PermissionDenied
from services.puller.adapters.base import PullOptions
from services.puller.credentials import CredentialResolver
from services.puller.sources import parse_source
from tests.puller.conftest import Canary, safetensors_bytes, sha256, tiny_state_dict, torch_pickle_bytes

CONFIG = b'{"architectures": ["Tiny"], "hidden": 4}'
WEIGHTS = safetensors_bytes(1)


@pytest.fixture
def tiny(hub):
    hub.add_commit("org/tiny", {"config.json": b"{}", "model.safetensors": safetensors_bytes(0)}, tags=("v1",))
    return hub.add_commit("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS, "README.md": b"# tiny"})


async def _fetch(adapter, source, tmp_path, **options):
    return await adapter.fetch(parse_source(source), PullOptions(**options), None, tmp_path / "staging")


async def test_pull_resolves_the_revision_and_pins_every_download(make_hf, hub, tiny, tmp_path):
    fetched = await _fetch(make_hf(), "hf://org/tiny@main", tmp_path)
    assert fetched.source_uri == f"hf://org/tiny@{tiny}"
    files = {f.path: f for f in fetched.files}
    assert set(files) == {"config.json", "model.safetensors", "README.md"}
    assert files["model.safetensors"].sha256 == sha256(WEIGHTS)
    assert files["config.json"].local.read_bytes() == CONFIG
    assert fetched.framework == "transformers"
    assert fetched.parameters["requested_revision"] == "main" and fetched.parameters["resolved_commit"] == tiny
    resolves = [r.path for r in hub.requests if "/resolve/" in r.path]
    assert resolves and all(f"/resolve/{tiny}/" in p for p in resolves)  # never the moving branch name


async def test_allow_patterns_select_files(make_hf, hub, tiny, tmp_path):
    fetched = await _fetch(make_hf(), "hf://org/tiny", tmp_path, allow_patterns=("*.safetensors",))
    assert [f.path for f in fetched.files] == ["model.safetensors"]
    assert all("config.json" not in p for p in hub.file_gets())
    with pytest.raises(FailedPrecondition) as none:
        await _fetch(make_hf(), "hf://org/tiny", tmp_path, allow_patterns=("*.onnx",))
    assert none.value.field == "allow_patterns"


@pytest.mark.parametrize("path, needle", [("model.safetensors", "lfs sha256"), ("config.json", "git blob id")])
async def test_same_size_byte_flip_is_refused_and_evicted(make_hf, hub, tiny, tmp_path, path, needle):
    good = hub.repos["org/tiny"].commits[tiny][path]
    hub.serve_instead[("org/tiny", path)] = bytes([good[0] ^ 0x01]) + good[1:]
    with pytest.raises(IntegrityError) as caught:
        await _fetch(make_hf(), "hf://org/tiny", tmp_path)
    assert path in caught.value.message and needle in caught.value.message
    assert not (tmp_path / "staging" / path).exists()
    blobs = tmp_path / "cache" / "hf" / "models--org--tiny" / "blobs"
    assert sha256(good) not in {b.name for b in blobs.iterdir()}  # the bad blob is not left for a retry
    del hub.serve_instead[("org/tiny", path)]
    fetched = await _fetch(make_hf(), "hf://org/tiny", tmp_path)  # the next pull downloads it again, verified
    assert {f.path: f.sha256 for f in fetched.files}[path] == sha256(good)


@pytest.mark.parametrize("path", ["model.safetensors", "config.json"])
async def test_truncated_file_is_refused(make_hf, hub, tiny, tmp_path, path):
    good = hub.repos["org/tiny"].commits[tiny][path]
    hub.serve_instead[("org/tiny", path)] = good[:-3]
    with pytest.raises(IntegrityError) as caught:
        await _fetch(make_hf(), "hf://org/tiny", tmp_path)
    assert path in caught.value.message and "size" in caught.value.message


async def test_wrong_lfs_sha_in_metadata_is_refused(make_hf, hub, tiny, tmp_path):
    hub.lfs_sha_override[("org/tiny", "model.safetensors")] = "0" * 64
    with pytest.raises(IntegrityError) as caught:
        await _fetch(make_hf(), "hf://org/tiny", tmp_path)
    assert "model.safetensors" in caught.value.message and "0" * 64 in caught.value.message


async def test_pickle_only_repo_is_refused_without_downloading_it(make_hf, hub, tmp_path):
    canary = tmp_path / "canary"
    hub.add_commit("org/pickled", {"config.json": CONFIG, "pytorch_model.bin": torch_pickle_bytes(Canary(str(canary)))})
    with pytest.raises(FailedPrecondition) as caught:
        await _fetch(make_hf(), "hf://org/pickled", tmp_path)
    assert caught.value.field == "allow_pickle" and "pytorch_model.bin" in caught.value.message
    assert not any(p.endswith(".bin") for p in hub.file_gets())
    with pytest.raises(IntegrityError) as evil:  # allowed, but it is not weights: refused by weights_only
        await _fetch(make_hf(), "hf://org/pickled", tmp_path, allow_pickle=True)
    assert "not a weights-only checkpoint" in evil.value.message
    assert not canary.exists()


async def test_allowed_pickle_is_converted_to_safetensors(make_hf, hub, tmp_path):
    state = tiny_state_dict(3)
    hub.add_commit("org/legacy", {"config.json": CONFIG, "pytorch_model.bin": torch_pickle_bytes(state)})
    fetched = await _fetch(make_hf(), "hf://org/legacy", tmp_path, allow_pickle=True)
    assert [f.path for f in fetched.files] == ["config.json"]  # the pickle itself goes nowhere
    converted = fetched.state_dicts["pytorch_model.safetensors"]
    assert all(converted[k].equal(v) for k, v in state.items())
    assert not (tmp_path / "staging" / "pytorch_model.bin").exists()


async def test_safetensors_wins_and_pickle_is_never_fetched(make_hf, hub, tmp_path):
    pickled = torch_pickle_bytes(tiny_state_dict())
    hub.add_commit("org/both", {"model.safetensors": WEIGHTS, "pytorch_model.bin": pickled})
    fetched = await _fetch(make_hf(), "hf://org/both", tmp_path)
    assert [f.path for f in fetched.files] == ["model.safetensors"]
    assert fetched.parameters["skipped_pickle"] == ["pytorch_model.bin"]
    assert not any(p.endswith(".bin") for p in hub.file_gets())


async def test_offline_serves_a_cached_pin_with_no_request(make_hf, hub, tiny, tmp_path):
    online = await _fetch(make_hf(), "hf://org/tiny@main", tmp_path)
    before = len(hub.requests)
    for source in ("hf://org/tiny@main", f"hf://org/tiny@{tiny}"):
        offline = await _fetch(make_hf(offline=True), source, tmp_path / source[-4:])
        assert offline.source_uri == online.source_uri
        assert {(f.path, f.sha256) for f in offline.files} == {(f.path, f.sha256) for f in online.files}
    assert len(hub.requests) == before  # not one request, telemetry included


async def test_offline_refuses_what_is_not_cached(make_hf, hub, tiny, tmp_path):
    for source in ("hf://org/tiny@main", f"hf://org/tiny@{tiny}", "hf://org/other"):
        with pytest.raises(FailedPrecondition) as caught:
            await _fetch(make_hf(offline=True), source, tmp_path)
        assert "offline" in caught.value.message and "not cached" in caught.value.message
    await _fetch(make_hf(), "hf://org/tiny", tmp_path, allow_patterns=("config.json",))
    with pytest.raises(FailedPrecondition) as partial:  # pinned, but the weights were never downloaded
        await _fetch(make_hf(offline=True), "hf://org/tiny", tmp_path)
    assert " file " in partial.value.message and "not cached" in partial.value.message
    assert len(hub.requests) == 4  # revision, tree, HEAD + GET of config.json: all from the online pull


async def test_offline_verifies_the_cache_too(make_hf, hub, tiny, tmp_path):
    await _fetch(make_hf(), "hf://org/tiny", tmp_path)
    blob = tmp_path / "cache" / "hf" / "models--org--tiny" / "blobs" / sha256(WEIGHTS)
    blob.write_bytes(bytes([WEIGHTS[0] ^ 1]) + WEIGHTS[1:])  # swapped on disk, same size
    with pytest.raises(IntegrityError):
        await _fetch(make_hf(offline=True), "hf://org/tiny", tmp_path / "again")


async def test_not_found_names_the_source(make_hf, hub, tiny, tmp_path):
    with pytest.raises(NotFound) as repo:
        await _fetch(make_hf(), "hf://org/missing", tmp_path)
    with pytest.raises(NotFound) as revision:
        await _fetch(make_hf(), "hf://org/tiny@nope", tmp_path)
    assert repo.value.field == revision.value.field == "source"
    assert "nope" in revision.value.message


async def test_token_reaches_the_hub_but_no_log(make_hf, hub, tiny, tmp_path, caplog):
    token = "hf_TOPSECRET_0123456789"
    hub.required_token = token
    credentials = CredentialResolver(tmp_path / "credentials", environ={"MLMESH_HUGGINGFACE_API_TOKEN": token})
    with pytest.raises((NotFound, PermissionDenied)):
        await _fetch(make_hf(), "hf://org/tiny", tmp_path)  # no token: the private repo is not visible
    caplog.set_level(logging.DEBUG)
    start = len(hub.requests)
    fetched = await _fetch(make_hf(credentials=credentials), "hf://org/tiny", tmp_path)
    assert len(fetched.files) == 3
    authed = hub.requests[start:]  # resolve, tree, and HEAD + GET of each file: every one carries the token
    assert len(authed) == 8 and {r.headers.get("authorization") for r in authed} == {f"Bearer {token}"}
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)
    assert token not in repr(fetched) and token not in str(fetched.parameters)


async def test_cancel_stops_the_download_thread_and_leaves_no_partial_file(make_hf, hub, tmp_path):
    size = 48 * 1024 * 1024  # the client reports progress every 10 MiB: several reports before the end
    hub.add_commit("org/big", {"model.safetensors": b"\0" * size})
    hub.chunk_delay_s = 0.02  # 1 MiB per 20 ms: about a second for the whole file
    task = asyncio.create_task(_fetch(make_hf(), "hf://org/big", tmp_path))
    while not hub.file_gets():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.done()  # the cancel waited for the thread to stop ...
    await asyncio.sleep(0.2)
    assert hub.bodies_sent and hub.bodies_sent[-1] < size  # ... mid-body: the client hung up
    leftovers = [p.name for p in (tmp_path / "cache" / "hf").rglob("*") if p.is_file() and "blobs" in p.parts]
    assert leftovers == [] and not (tmp_path / "staging" / "model.safetensors").exists()


async def test_no_telemetry_request_even_when_the_hub_is_the_default_endpoint(make_hf, hub, tiny, tmp_path,
                                                                              monkeypatch):
    # huggingface_hub asks `constants.ENDPOINT/api/agent-harnesses` (not the endpoint it was given) for a
    # registry used to decorate its user agent; point that at the local hub to see whether it is asked.
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "harnesses.json"))
    monkeypatch.setattr(_detect_agent, "_registry", None)
    monkeypatch.setenv("AI_AGENT", "some-agent")
    await _fetch(make_hf(), "hf://org/tiny", tmp_path)
    await _fetch(make_hf(offline=True), "hf://org/tiny", tmp_path / "offline")
    assert not [r.path for r in hub.requests if r.path.startswith("/api/agent-")]


async def test_an_unsafe_path_from_the_hub_is_refused(make_hf, hub, tmp_path):
    hub.add_commit("org/evil", {"../escape.json": b"{}", "model.safetensors": WEIGHTS})
    with pytest.raises(IntegrityError) as caught:
        await _fetch(make_hf(), "hf://org/evil", tmp_path)
    assert "unsafe path" in caught.value.message and hub.file_gets() == []
    assert not (tmp_path / "escape.json").exists()
