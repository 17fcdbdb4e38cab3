"""The TorchHub allow-list: which entry points may be pulled, each pinned to a weights URL and its
full SHA-256 (and the architecture needed to use them), because hubconf.py is never run.

Matching is exact on the raw strings of owner/repo, ref and entry: no case folding, no Unicode
normalisation (the parser already refused non-ASCII). `Pytorch/vision`, a fork's owner, another
ref, or a look-alike letter is simply a different name, and a different name is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from services.core.errors import FailedPrecondition, PermissionDenied
from services.puller.credentials import CredentialKey, CredentialResolver
from services.puller.sources import TorchHubSource, parse_source

ALLOWLIST_KEY = CredentialKey("torchhub", "allowlist")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class AllowedWeights:
    repo: str  # "owner/repo"
    ref: str
    entry: str
    url: str  # the canonical weights URL (a mirror may serve the same path)
    sha256: str
    architecture: Mapping[str, Any] = field(default_factory=dict)
    size: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo, self.ref, self.entry)


DEFAULT_ALLOWLIST: tuple[AllowedWeights, ...] = (
    AllowedWeights(
        repo="pytorch/vision", ref="main", entry="resnet18",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", size=46_830_571,
        architecture={"builder": "torchvision.models.resnet18", "kwargs": {"num_classes": 1000},
                      "weights": "ResNet18_Weights.IMAGENET1K_V1"},
    ),
)


def parse_allowlist(text: str, origin: str) -> list[AllowedWeights]:
    """Entries from a YAML or JSON list of {repo, ref, entry, url, sha256, architecture?, size?}."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raise FailedPrecondition(f"TorchHub allow-list from {origin} is not valid YAML/JSON") from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise FailedPrecondition(f"TorchHub allow-list from {origin} must be a list of entries")
    return [_entry(item, f"{origin} entry {index}") for index, item in enumerate(raw)]


def _entry(item: Any, where: str) -> AllowedWeights:
    if not isinstance(item, dict):
        raise FailedPrecondition(f"TorchHub allow-list {where}: must be a mapping")
    unknown = set(item) - {"repo", "ref", "entry", "url", "sha256", "architecture", "size"}
    if unknown:
        raise FailedPrecondition(f"TorchHub allow-list {where}: unknown keys {sorted(unknown)}")
    strings = {k: item.get(k) for k in ("repo", "ref", "entry", "url", "sha256")}
    if any(not isinstance(v, str) or not v for v in strings.values()):
        raise FailedPrecondition(f"TorchHub allow-list {where}: repo, ref, entry, url and sha256 are required strings")
    try:  # the same grammar as a request, so an entry can never be matched by something unparsable
        parsed = parse_source(f"torchhub://{strings['repo']}:{strings['ref']}/{strings['entry']}")
    except Exception:
        raise FailedPrecondition(f"TorchHub allow-list {where}: repo/ref/entry is not a valid ASCII name") from None
    if not _SHA256.match(strings["sha256"]):
        raise FailedPrecondition(f"TorchHub allow-list {where}: sha256 must be the full 64 lowercase hex digits")
    if urlsplit(strings["url"]).scheme not in ("https", "http") or not urlsplit(strings["url"]).netloc:
        raise FailedPrecondition(f"TorchHub allow-list {where}: url must be an http(s) URL")
    architecture = item.get("architecture") or {}
    size = item.get("size")
    try:
        json.dumps(architecture, allow_nan=False)
    except (TypeError, ValueError):
        architecture = None
    if not isinstance(architecture, dict) or (size is not None and (not isinstance(size, int) or size < 0)):
        raise FailedPrecondition(f"TorchHub allow-list {where}: architecture must be a mapping, size an integer")
    assert isinstance(parsed, TorchHubSource)
    return AllowedWeights(parsed.repo, parsed.ref, parsed.entry, strings["url"], strings["sha256"], architecture, size)


class TorchHubAllowList:
    def __init__(self, entries: Iterable[AllowedWeights]) -> None:
        self._by_key: dict[tuple[str, str, str], AllowedWeights] = {}
        for entry in entries:
            known = self._by_key.get(entry.key)
            if known is not None and (known.url, known.sha256) != (entry.url, entry.sha256):
                raise FailedPrecondition(
                    f"TorchHub allow-list pins {entry.repo}:{entry.ref}/{entry.entry} to two different weights"
                )
            self._by_key[entry.key] = entry

    def __len__(self) -> int:
        return len(self._by_key)

    def lookup(self, source: TorchHubSource) -> AllowedWeights:
        allowed = self._by_key.get((source.repo, source.ref, source.entry))  # exact, case-sensitive
        if allowed is None:
            raise PermissionDenied(
                f"{source.uri()} is not on the TorchHub allow-list (exact owner/repo, ref and entry); "
                "an operator can add it with its weights URL and full sha256"
            )
        return allowed


def load_allowlist(credentials: CredentialResolver, allowlist_file: Path | None) -> TorchHubAllowList:
    """DEFAULT_ALLOWLIST ∪ the settings' file ∪ the operator's credential (read on every call, so an
    edit takes effect without a restart)."""
    entries = list(DEFAULT_ALLOWLIST)
    if allowlist_file is not None:
        try:
            text = Path(allowlist_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FailedPrecondition(f"TorchHub allow-list file {allowlist_file} cannot be read ({exc})") from None
        entries += parse_allowlist(text, f"file {allowlist_file}")
    secret = credentials.resolve(ALLOWLIST_KEY)
    if secret is not None:
        entries += parse_allowlist(secret.reveal(), f"credential {ALLOWLIST_KEY} ({secret.origin})")
    return TorchHubAllowList(entries)
