"""TorchHubAdapter against a local weights mirror: exact allow-list, full sha256, weights_only, offline."""

from __future__ import annotations

import json

import pytest

from services.core.errors import FailedPrecondition, IntegrityError, InvalidArgument, PermissionDenied
from services.puller.adapters.base import PullOptions
from services.puller.allowlist import DEFAULT_ALLOWLIST
from services.puller.credentials import CredentialResolver
from services.puller.sources import parse_source
from tests.puller.conftest import Canary, sha256, tiny_state_dict, torch_pickle_bytes

WEIGHTS = torch_pickle_bytes(tiny_state_dict(7))
PATH = "/models/tiny-0123abcd.pth"
SOURCE = "torchhub://acme/tinyvision:v1/tiny"


def allowlist(data: bytes = WEIGHTS, path: str = PATH, entry: str = "tiny") -> str:
    return json.dumps([{"repo": "acme/tinyvision", "ref": "v1", "entry": entry, "sha256": sha256(data),
                        "url": f"https://download.pytorch.org{path}", "architecture": {"builder": "acme.Tiny"}}])


@pytest.fixture
def operator(tmp_path, mirror):
    mirror.files[PATH] = WEIGHTS
    return CredentialResolver(tmp_path / "credentials", environ={"MLMESH_TORCHHUB_ALLOWLIST": allowlist()})


async def _fetch(adapter, source, tmp_path):
    return await adapter.fetch(parse_source(source), PullOptions(), None, tmp_path / "staging")


async def test_allow_listed_weights_are_verified_and_loaded_weights_only(make_torchhub, mirror, operator, tmp_path):
    fetched = await _fetch(make_torchhub(credentials=operator), SOURCE, tmp_path)
    assert fetched.source_uri == f"{SOURCE}@sha256:{sha256(WEIGHTS)}"
    state = fetched.state_dicts["model.safetensors"]
    assert all(state[k].equal(v) for k, v in tiny_state_dict(7).items())
    assert fetched.metadata["architecture"] == {"builder": "acme.Tiny"} and fetched.files == []
    assert mirror.requests == [PATH]
    await _fetch(make_torchhub(credentials=operator), SOURCE, tmp_path)  # cached and verified: no request
    assert mirror.count == 1


@pytest.mark.parametrize("source, error", [
    ("torchhub://Acme/tinyvision:v1/tiny", PermissionDenied),  # case
    ("torchhub://acme/TinyVision:v1/tiny", PermissionDenied),
    ("torchhub://acme/tinyvision:v1/Tiny", PermissionDenied),
    ("torchhub://acme-fork/tinyvision:v1/tiny", PermissionDenied),  # a fork's owner
    ("torchhub://acme/tinyvision:v2/tiny", PermissionDenied),  # another ref
    ("torchhub://acme/tinyvision/tiny", PermissionDenied),  # the default ref is not v1
    ("torchhub://acme/tinyvision:V1/tiny", PermissionDenied),
    ("torchhub://\u0430cme/tinyvision:v1/tiny", InvalidArgument),  # Cyrillic 'а'
    ("torchhub://acme/tinyvisi\u043en:v1/tiny", InvalidArgument),  # Cyrillic 'о'
    ("torchhub://\uff41cme/tinyvision:v1/tiny", InvalidArgument),  # fullwidth 'ａ' (NFKC would make it 'a')
    ("torchhub://acme/tinyvision:v1/t\u200biny", InvalidArgument),  # zero-width space
    ("torchhub://pytorch/vision:v0.15.2/resnet18", PermissionDenied),  # a default entry at another ref
])
async def test_look_alikes_are_refused_with_zero_requests(make_torchhub, mirror, operator, tmp_path, source, error):
    adapter = make_torchhub(credentials=operator)
    with pytest.raises(error) as caught:
        adapter.check(parse_source(source), PullOptions())
    with pytest.raises(error):
        await _fetch(adapter, source, tmp_path)
    if error is PermissionDenied:
        assert "not on the TorchHub allow-list" in caught.value.message
    else:
        assert caught.value.field == "source"
    assert mirror.count == 0


def test_default_allowlist_pins_full_hashes(make_torchhub):
    allowed = make_torchhub().check(parse_source("torchhub://pytorch/vision/resnet18"), PullOptions())
    assert allowed in DEFAULT_ALLOWLIST and len(allowed.sha256) == 64 and allowed.architecture
    assert make_torchhub().weights_url(allowed).endswith("/models/resnet18-f37072fd.pth")


async def test_tampered_mirror_is_refused_and_nothing_is_cached(make_torchhub, mirror, operator, tmp_path):
    mirror.files[PATH] = WEIGHTS[:-1] + bytes([WEIGHTS[-1] ^ 1])
    with pytest.raises(IntegrityError) as caught:
        await _fetch(make_torchhub(credentials=operator), SOURCE, tmp_path)
    assert sha256(WEIGHTS) in caught.value.message
    assert list((tmp_path / "cache" / "torchhub").iterdir()) == []


async def test_offline_both_ways(make_torchhub, mirror, operator, tmp_path):
    with pytest.raises(FailedPrecondition) as caught:
        await _fetch(make_torchhub(credentials=operator, offline=True), SOURCE, tmp_path)
    assert "offline" in caught.value.message and "not cached" in caught.value.message
    assert mirror.count == 0
    await _fetch(make_torchhub(credentials=operator), SOURCE, tmp_path)
    fetched = await _fetch(make_torchhub(credentials=operator, offline=True), SOURCE, tmp_path)
    assert "model.safetensors" in fetched.state_dicts and mirror.count == 1


async def test_a_swapped_cache_file_is_never_used(make_torchhub, mirror, operator, tmp_path):
    await _fetch(make_torchhub(credentials=operator), SOURCE, tmp_path)
    (cached,) = (tmp_path / "cache" / "torchhub").iterdir()
    cached.write_bytes(torch_pickle_bytes(tiny_state_dict(8)))
    with pytest.raises(FailedPrecondition) as caught:
        await _fetch(make_torchhub(credentials=operator, offline=True), SOURCE, tmp_path)
    assert "discarded" in caught.value.message
    fetched = await _fetch(make_torchhub(credentials=operator), SOURCE, tmp_path)  # online: fetched again
    assert fetched.state_dicts["model.safetensors"]["linear.bias"].equal(tiny_state_dict(7)["linear.bias"])
    assert mirror.count == 2


async def test_pinned_pickle_payload_is_not_executed(make_torchhub, mirror, tmp_path):
    canary = tmp_path / "canary"
    evil = torch_pickle_bytes({"weight": Canary(str(canary))})
    mirror.files["/models/evil.pth"] = evil
    credentials = CredentialResolver(None, environ={"MLMESH_TORCHHUB_ALLOWLIST": allowlist(evil, "/models/evil.pth")})
    with pytest.raises(IntegrityError) as caught:
        await _fetch(make_torchhub(credentials=credentials), SOURCE, tmp_path)
    assert "not a weights-only checkpoint" in caught.value.message and not canary.exists()


@pytest.mark.parametrize("text, needle", [
    ("{not: [valid", "not valid YAML"),
    ('{"repo": "acme/x"}', "must be a list"),
    ('[{"repo": "acme/x", "ref": "v1", "entry": "x", "url": "https://h/x.pth", "sha256": "abc"}]', "full 64"),
    ('[{"repo": "acme/x", "ref": "v1", "entry": "x", "url": "ftp://h/x", "sha256": "' + "a" * 64 + '"}]', "http(s)"),
    ('[{"repo": "\u0430cme/x", "ref": "v1", "entry": "x", "url": "https://h/x", "sha256": "' + "a" * 64 + '"}]',
     "ASCII"),
])
def test_a_bad_operator_allowlist_fails_closed(make_torchhub, text, needle):
    credentials = CredentialResolver(None, environ={"MLMESH_TORCHHUB_ALLOWLIST": text})
    with pytest.raises(FailedPrecondition) as caught:
        make_torchhub(credentials=credentials).check(parse_source("torchhub://pytorch/vision/resnet18"), PullOptions())
    assert needle in caught.value.message and "MLMESH_TORCHHUB_ALLOWLIST" in caught.value.message
