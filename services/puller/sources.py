"""Parse pull sources: "hf://ORG/NAME[@REV]" and "torchhub://OWNER/REPO[:REF]/ENTRY".

Parsing is strict and ASCII-only: a source names something we will fetch and trust, so a look-alike
character (Cyrillic 'а', fullwidth letters, zero-width joiners) is refused here rather than
normalised into a name that happens to match an allow-list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.core.errors import InvalidArgument

FIELD = "source"
MAX_SOURCE_CHARS = 1024
HF_SCHEME = "hf://"
TORCHHUB_SCHEME = "torchhub://"
TORCHHUB_DEFAULT_REF = "main"  # what torch.hub tries first when a ref is omitted

_HF_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?$")
_HF_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}$")
_GH_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_GH_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_GIT_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(message, field=FIELD)


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face model repo at a requested revision (None: the default branch)."""

    repo_id: str
    revision: str | None = None

    @property
    def default_name(self) -> str:
        return self.repo_id

    def uri(self, commit: str | None = None) -> str:
        rev = commit or self.revision
        return f"{HF_SCHEME}{self.repo_id}" + (f"@{rev}" if rev else "")


@dataclass(frozen=True)
class TorchHubSource:
    """A TorchHub entry point; `ref` is what was asked for (the default ref when omitted)."""

    repo: str  # "owner/repo"
    ref: str
    entry: str

    @property
    def default_name(self) -> str:
        return f"{self.repo}/{self.entry}"

    def uri(self, sha256: str | None = None) -> str:
        base = f"{TORCHHUB_SCHEME}{self.repo}:{self.ref}/{self.entry}"
        return f"{base}@sha256:{sha256}" if sha256 else base


Source = HFSource | TorchHubSource


def parse_source(text: str) -> Source:
    """The parsed source, or InvalidArgument(field="source") saying precisely what is wrong."""
    if not text:
        raise _bad("is required: hf://ORG/NAME[@REVISION] or torchhub://OWNER/REPO[:REF]/ENTRY")
    if len(text) > MAX_SOURCE_CHARS:
        raise _bad(f"longer than {MAX_SOURCE_CHARS} characters")
    if not text.isascii():
        # Never normalise (NFKC would turn fullwidth 'ｐ' into 'p'): a look-alike is a different name.
        position = next(i for i, ch in enumerate(text) if not ch.isascii())
        raise _bad(f"must be ASCII; character {position} is {text[position]!r} (U+{ord(text[position]):04X})")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise _bad("must not contain whitespace or control characters")
    if text.startswith(HF_SCHEME):
        return _parse_hf(text[len(HF_SCHEME):])
    if text.startswith(TORCHHUB_SCHEME):
        return _parse_torchhub(text[len(TORCHHUB_SCHEME):])
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme:
        raise _bad(f"unknown scheme {scheme!r}; use hf:// or torchhub://")
    raise _bad("needs a scheme: hf:// or torchhub://")


def _parse_hf(rest: str) -> HFSource:
    repo_id, at, revision = rest.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2:
        raise _bad("a Hugging Face source is hf://ORG/NAME[@REVISION]")
    for label, part in zip(("ORG", "NAME"), parts):
        if not _HF_PART.match(part) or "--" in part or ".." in part:
            raise _bad(f"{label} {part!r} must be 1-96 of letters, digits, '.', '_', '-' (no '--' or '..')")
    if at:
        bad = ".." in revision or "//" in revision or revision.endswith(("/", ".lock"))
        if bad or not _HF_REVISION.match(revision):
            raise _bad(f"revision {revision!r} is not a valid branch, tag or commit")
        return HFSource(repo_id, revision)
    return HFSource(repo_id, None)


def _parse_torchhub(rest: str) -> TorchHubSource:
    parts = rest.split("/")
    if len(parts) != 3:
        raise _bad("a TorchHub source is torchhub://OWNER/REPO[:REF]/ENTRY")
    owner, repo_ref, entry = parts
    repo, colon, ref = repo_ref.partition(":")
    if not _GH_OWNER.match(owner):
        raise _bad(f"OWNER {owner!r} must be 1-39 letters, digits or '-'")
    if not _GH_REPO.match(repo) or repo in (".", ".."):
        raise _bad(f"REPO {repo!r} must be 1-100 letters, digits, '.', '_' or '-'")
    if colon and (not _GIT_REF.match(ref) or ".." in ref or ref.endswith(".lock")):
        raise _bad(f"REF {ref!r} is not a valid branch or tag")
    if not _ENTRY.match(entry):
        raise _bad(f"ENTRY {entry!r} must be a Python identifier")
    return TorchHubSource(f"{owner}/{repo}", ref if colon else TORCHHUB_DEFAULT_REF, entry)
