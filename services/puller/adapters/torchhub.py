"""TorchHubAdapter: pulls allow-listed TorchHub weights. hubconf.py is never fetched or run.

Each allow-list entry pins a weights URL and its full SHA-256. The download streams to a temporary
file beside the cache, hashed on the way, and is renamed into the cache only when the whole file
matches (what `torch.hub.download_url_to_file(hash_prefix=<full sha256>)` does, plus progress and
cancel). Cached weights are hashed again before every use. The weights are read `weights_only=True`
and go on as a state dict, to be stored as safetensors.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from services.core.errors import FailedPrecondition, IntegrityError, ResourceExhausted, Unavailable
from services.core.operations.runner import ProgressReporter
from services.puller.adapters.base import Fetched, PullOptions, TransferMeter, digests, run_blocking
from services.puller.allowlist import AllowedWeights, load_allowlist
from services.puller.credentials import CredentialResolver
from services.puller.sources import TorchHubSource
from services.puller.weights import load_weights_only

WEIGHTS_PATH = "model.safetensors"
_CHUNK = 1024 * 1024


class TorchHubAdapter:
    def __init__(
        self,
        *,
        cache_dir: Path,
        credentials: CredentialResolver,
        allowlist_file: Path | None = None,
        mirror_url: str = "",
        offline: bool = False,
        max_file_bytes: int = 20 * 1024**3,
        timeout_s: float = 60.0,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.offline = offline
        self._credentials = credentials
        self._allowlist_file = allowlist_file
        self._mirror = mirror_url.rstrip("/")
        self._max_file_bytes = max_file_bytes
        self._timeout_s = timeout_s

    def check(self, source: TorchHubSource, options: PullOptions) -> AllowedWeights:
        """The pinned weights for `source`, or PermissionDenied; sends nothing anywhere."""
        return load_allowlist(self._credentials, self._allowlist_file).lookup(source)

    def weights_url(self, allowed: AllowedWeights) -> str:
        if not self._mirror:
            return allowed.url
        parts = urlsplit(allowed.url)
        return self._mirror + parts.path + (f"?{parts.query}" if parts.query else "")

    async def fetch(
        self, source: TorchHubSource, options: PullOptions, reporter: ProgressReporter | None, staging: Path
    ) -> Fetched:
        allowed = self.check(source, options)
        meter = TransferMeter()
        meter.total_files, meter.total_bytes = 1, allowed.size or 0
        cached = await run_blocking(self._cached_or_download, source, allowed, meter,
                                    meter=meter, reporter=reporter, stage="download")
        state_dict = await run_blocking(load_weights_only, cached, PurePosixPath(urlsplit(allowed.url).path).name,
                                        meter=meter, reporter=reporter, stage="convert")
        return Fetched(
            source_uri=source.uri(allowed.sha256),
            state_dicts={WEIGHTS_PATH: state_dict},
            framework="torch",
            metadata={"architecture": dict(allowed.architecture),
                      "source": {"hub": "torchhub", "repo": source.repo, "ref": source.ref, "entry": source.entry}},
            parameters={"repo": source.repo, "ref": source.ref, "entry": source.entry, "url": allowed.url,
                        "sha256": allowed.sha256, "offline": self.offline},
        )

    # ---- blocking halves (worker threads) ----

    def _cached_or_download(self, source: TorchHubSource, allowed: AllowedWeights, meter: TransferMeter) -> Path:
        path = self.cache_dir / f"{allowed.sha256}{PurePosixPath(urlsplit(allowed.url).path).suffix or '.pt'}"
        damaged = False
        if path.is_file():
            if digests(path)[0] == allowed.sha256:
                meter.file_finished(path.stat().st_size)
                return path
            path.unlink(missing_ok=True)  # a swapped or damaged cache entry is never used
            damaged = True
        if self.offline:
            raise FailedPrecondition(
                f"TorchHub is offline (ml_torchhub_offline) and the weights of {source.uri()} are not cached"
                + (" (the cached copy did not match its sha256 and was discarded)" if damaged else "")
            )
        self._download(self.weights_url(allowed), path, allowed, meter)
        return path

    def _download(self, url: str, dest: Path, allowed: AllowedWeights, meter: TransferMeter) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.partial")
        digest, size = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": "mlmesh-puller"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response, open(tmp, "wb") as out:
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if size > self._max_file_bytes:
                        raise ResourceExhausted(f"{url} is larger than the limit of {self._max_file_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                    meter.add(len(chunk))
            if digest.hexdigest() != allowed.sha256:
                raise IntegrityError(
                    f"{url}: sha256 {digest.hexdigest()} does not match the allow-list's {allowed.sha256}; discarded"
                )
            os.replace(tmp, dest)  # only a fully verified file ever has the cache name
            meter.file_finished(size)
        except urllib.error.HTTPError as exc:
            raise Unavailable(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Unavailable(f"{url} could not be reached ({type(exc).__name__})") from None
        finally:
            tmp.unlink(missing_ok=True)
