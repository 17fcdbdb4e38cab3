"""huggingface_hub exceptions -> domain errors. Messages name the source, never a URL's query or a
header, and never the client's own text (which can echo request details)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.core.errors import (
    FailedPrecondition, IntegrityError, MLMeshError, NotFound, PermissionDenied, Unavailable,
)
from services.puller.adapters.base import DownloadCancelled
from services.puller.sources import HFSource


@contextmanager
def hub_errors(source: HFSource, *, offline: bool, path: str | None = None) -> Iterator[None]:
    import httpx2
    from huggingface_hub import errors as hf

    what = f"{source.uri()}" + (f" file {path}" if path else "")
    try:
        yield
    except (MLMeshError, DownloadCancelled):
        raise
    except (hf.LocalEntryNotFoundError, hf.RevisionResolutionError, hf.OfflineModeIsEnabled):
        if offline:
            raise FailedPrecondition(
                f"the Hugging Face hub is offline (ml_hf_hub_offline) and {what} is not cached"
            ) from None
        raise Unavailable(f"the Hugging Face hub could not be reached for {what}") from None
    except hf.GatedRepoError:
        raise PermissionDenied(f"{source.repo_id} is gated; the configured token has no access") from None
    except hf.RepositoryNotFoundError:
        raise NotFound(f"no repository {source.repo_id} (or it is private and the token has no access)",
                       field="source") from None
    except hf.RevisionNotFoundError:
        raise NotFound(f"{source.repo_id} has no revision {source.revision!r}", field="source") from None
    except hf.RemoteEntryNotFoundError:
        raise NotFound(f"{what} is listed by the hub but cannot be downloaded", field="source") from None
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise PermissionDenied(f"the hub refused {what} (HTTP {status})") from None
        raise Unavailable(f"the hub answered HTTP {status} for {what}") from None
    except httpx2.TransportError as exc:
        raise Unavailable(f"the Hugging Face hub could not be reached for {what} ({type(exc).__name__})") from None
    except OSError as exc:
        if "Consistency check failed" in str(exc):  # hf_hub_download's own size check
            raise IntegrityError(f"{what}: the downloaded size does not match the hub's; discarded") from None
        raise
