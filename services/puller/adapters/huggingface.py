"""HuggingFaceAdapter: pulls a model repo through huggingface_hub, pinned to a commit and verified.

The requested revision is resolved to its commit once and every file is downloaded at that commit.
`hf_hub_download` checks sizes only, so each file is hashed here: its SHA-256 against the hub's LFS
`sha256`, or for a plain git file its git blob sha1 against the tree's `oid`. A file that does not
match is evicted from the cache and the pull fails. The verified listing of a commit is kept beside
the cache, so offline mode can serve (and verify) a pinned revision with no request at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.core.errors import FailedPrecondition, IntegrityError, ResourceExhausted
from services.core.operations.runner import ProgressReporter
from services.puller.adapters.base import (
    Fetched, FetchedFile, PullOptions, TransferMeter, digests, run_blocking, stage_copy,
)
from services.puller.adapters.hf_errors import hub_errors
from services.puller.credentials import CredentialKey, CredentialResolver, Secret
from services.puller.sources import HFSource
from services.puller.weights import is_pickle, is_safetensors, load_weights_only, safetensors_path

TOKEN_KEY = CredentialKey("huggingface", "api_token")


@dataclass(frozen=True)
class HubEntry:
    """One file of a commit as the hub describes it."""

    path: str
    size: int
    blob_id: str  # git blob sha1
    lfs_sha256: str | None = None


@dataclass(frozen=True)
class Listing:
    commit: str
    entries: tuple[HubEntry, ...]


class HuggingFaceAdapter:
    def __init__(
        self,
        *,
        cache_dir: Path,
        credentials: CredentialResolver,
        endpoint: str = "",
        offline: bool = False,
        max_file_bytes: int = 20 * 1024**3,
        timeout_s: float = 60.0,
        pins_dir: Path | None = None,
    ) -> None:
        from huggingface_hub import constants

        # The client would otherwise fetch an "agent harness" list from huggingface.co (whatever the
        # endpoint) to decorate its user agent: a request offline mode must not make. Process-wide.
        constants.HF_HUB_DISABLE_TELEMETRY = True
        self.cache_dir = Path(cache_dir)
        # Verified listings live beside the hub cache, not in it (the client's cache tools own that layout).
        self.pins_dir = Path(pins_dir) if pins_dir else self.cache_dir.with_name(self.cache_dir.name + "-pins")
        self.endpoint = endpoint.rstrip("/") or None
        self.offline = offline
        self._credentials = credentials
        self._max_file_bytes = max_file_bytes
        self._timeout_s = timeout_s

    def check(self, source: HFSource, options: PullOptions) -> None:
        """Nothing to check beyond parsing before the pull starts (patterns are checked in `_select`)."""

    async def fetch(
        self, source: HFSource, options: PullOptions, reporter: ProgressReporter | None, staging: Path
    ) -> Fetched:
        meter = TransferMeter()
        token = None if self.offline else self._credentials.resolve(TOKEN_KEY)
        listing = await run_blocking(self._listing, source, token, meter=meter, reporter=reporter, stage="resolve")
        chosen, skipped = self._select(source, listing, options)
        meter.total_files, meter.total_bytes = len(chosen), sum(e.size for e in chosen)
        fetched = Fetched(source_uri=source.uri(listing.commit), framework="torch")
        for entry in chosen:
            file = await run_blocking(
                self._download, source, listing.commit, entry, staging, token, meter,
                meter=meter, reporter=reporter, stage="download",
            )
            if is_pickle(entry.path):
                # Allowed pickle: read weights-only, and only its safetensors form goes on.
                fetched.state_dicts[safetensors_path(entry.path)] = await run_blocking(
                    load_weights_only, file.local, entry.path, meter=meter, reporter=reporter, stage="convert"
                )
                file.local.unlink()
            else:
                fetched.files.append(file)
        paths = [e.path for e in chosen]
        if "config.json" in paths:
            fetched.framework = "transformers"
        fetched.metadata = {"source": {"hub": "huggingface", "repo_id": source.repo_id, "commit": listing.commit}}
        fetched.parameters = {
            "requested_revision": source.revision or "main", "resolved_commit": listing.commit, "files": paths,
            "allow_patterns": list(options.allow_patterns), "allow_pickle": options.allow_pickle,
            "skipped_pickle": skipped, "offline": self.offline,
        }
        return fetched

    # ---- blocking halves (worker threads) ----

    def _api(self, token: Secret | None):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=token.reveal() if token else False)

    def _listing(self, source: HFSource, token: Secret | None) -> Listing:
        with hub_errors(source, offline=self.offline):
            api = self._api(token)
            revision = api.resolve_revision(
                source.repo_id, revision=source.revision, cache_dir=self.cache_dir, local_files_only=self.offline
            )
            commit = revision.resolved
            if self.offline:
                return self._read_pins(source, commit)
            entries = tuple(
                HubEntry(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
                for f in api.list_repo_tree(source.repo_id, revision=commit, recursive=True)
                if hasattr(f, "blob_id")  # files; folders carry a tree_id
            )
        unsafe = [e.path for e in entries if not _safe_path(e.path)]
        if unsafe:  # a hub answer must never steer a write outside the staging folder
            raise IntegrityError(f"the hub listed an unsafe path for {source.uri(commit)}: {unsafe[0]!r}")
        listing = Listing(commit, entries)
        self._write_pins(source, listing)
        return listing

    def _download(
        self, source: HFSource, commit: str, entry: HubEntry, staging: Path, token: Secret | None, meter: TransferMeter
    ) -> FetchedFile:
        from huggingface_hub import hf_hub_download

        with hub_errors(source, offline=self.offline, path=entry.path):
            cached = hf_hub_download(
                source.repo_id, entry.path, revision=commit, cache_dir=self.cache_dir, endpoint=self.endpoint,
                token=token.reveal() if token else False, local_files_only=self.offline,
                etag_timeout=self._timeout_s, tqdm_class=meter.bar,
            )
        dest = staging / entry.path
        stage_copy(Path(cached), dest)
        sha256, git_oid, size = digests(dest)
        problem = _mismatch(entry, sha256, git_oid, size)
        if problem:
            meter.file_failed()
            dest.unlink(missing_ok=True)
            _evict(Path(cached))
            raise IntegrityError(f"{entry.path}: {problem}; the download was discarded")
        meter.file_finished(size)
        return FetchedFile(entry.path, dest, sha256, size)

    # ---- selection and pins ----

    def _select(self, source: HFSource, listing: Listing, options: PullOptions) -> tuple[list[HubEntry], list[str]]:
        from huggingface_hub.utils import filter_repo_objects

        chosen = list(filter_repo_objects(
            listing.entries, allow_patterns=list(options.allow_patterns) or None, key=lambda e: e.path
        ))
        if not chosen:
            raise FailedPrecondition(f"no file of {source.uri(listing.commit)} matches", field="allow_patterns")
        too_big = [e.path for e in chosen if e.size > self._max_file_bytes]
        if too_big:
            raise ResourceExhausted(f"{too_big[0]} is larger than the puller's limit of {self._max_file_bytes} bytes")
        pickles = [e.path for e in chosen if is_pickle(e.path)]
        if not pickles:
            return chosen, []
        if any(is_safetensors(e.path) for e in chosen):
            return [e for e in chosen if not is_pickle(e.path)], pickles  # safetensors wins; pickle never fetched
        if not options.allow_pickle:
            raise FailedPrecondition(
                f"{source.uri(listing.commit)} has only pickle weights ({', '.join(pickles[:3])}), which can run "
                "code when loaded; refused. An operator may set allow_pickle to load them weights-only and "
                "store them as safetensors", field="allow_pickle",
            )
        return chosen, []

    def _pins_path(self, source: HFSource, commit: str) -> Path:
        return self.pins_dir / ("models--" + source.repo_id.replace("/", "--")) / f"{commit}.json"

    def _write_pins(self, source: HFSource, listing: Listing) -> None:
        path = self._pins_path(source, listing.commit)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"commit": listing.commit, "entries": [asdict(e) for e in listing.entries]}))
        os.replace(tmp, path)

    def _read_pins(self, source: HFSource, commit: str) -> Listing:
        try:
            data: dict[str, Any] = json.loads(self._pins_path(source, commit).read_text())
        except FileNotFoundError:
            raise _not_cached(source) from None
        return Listing(data["commit"], tuple(HubEntry(**e) for e in data["entries"]))


def _not_cached(source: HFSource) -> FailedPrecondition:
    return FailedPrecondition(f"the Hugging Face hub is offline (ml_hf_hub_offline) and {source.uri()} is not cached")


def _safe_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and "\\" not in path and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _mismatch(entry: HubEntry, sha256: str, git_oid: str, size: int) -> str | None:
    if size != entry.size:
        return f"size {size} does not match the hub's {entry.size}"
    if entry.lfs_sha256 is not None and sha256 != entry.lfs_sha256:
        return f"sha256 {sha256} does not match the hub's lfs sha256 {entry.lfs_sha256}"
    if entry.lfs_sha256 is None and git_oid != entry.blob_id:
        return f"git blob id {git_oid} does not match the hub's {entry.blob_id}"
    return None


def _evict(cached: Path) -> None:
    """Drop a bad file from the cache (snapshot link and blob), so a retry downloads it again."""
    blob = Path(os.path.realpath(cached))
    cached.unlink(missing_ok=True)
    if blob != cached:
        blob.unlink(missing_ok=True)
