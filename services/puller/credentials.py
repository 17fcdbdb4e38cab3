"""CredentialResolver: secrets for external hubs from a secret backend, the environment or a file.

A resolved value is wrapped in `Secret`, whose repr and str are masked, so a secret that strays into
a log record, an f-string or an error message shows as `***`. Only `reveal()` gives the value, and
only an adapter handing it to its client calls it. Nothing here logs a value or puts one in an error.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.core.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger("mlmesh.puller.credentials")

_PART = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
# Conventional variables that also hold a credential (checked after the MLMESH_* one).
ENV_ALIASES: Mapping[tuple[str, str], tuple[str, ...]] = {("huggingface", "api_token"): ("HF_TOKEN",)}


@dataclass(frozen=True)
class CredentialKey:
    """Which secret: a provider ("huggingface", "torchhub") and a name ("api_token", "allowlist")."""

    provider: str
    name: str

    def __post_init__(self) -> None:
        for label, part in (("provider", self.provider), ("name", self.name)):
            if not _PART.match(part):
                raise InvalidArgument("must be 1-64 of a-z, 0-9, '_'", field=f"credential.{label}")

    @property
    def env_var(self) -> str:
        return f"MLMESH_{self.provider}_{self.name}".upper()

    def __str__(self) -> str:
        return f"{self.provider}/{self.name}"


class Secret:
    """A credential value that does not print itself."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin  # where it came from ("env MLMESH_...", "file ...", "backend"), never the value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(***, origin={self.origin!r})"

    def __str__(self) -> str:
        return "***"

    def __reduce__(self):  # pickling would carry the value to places we do not control
        raise TypeError("a Secret cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretBackend(Protocol):
    """A pluggable secret store (Vault, a cloud secret manager, ...). Return None when it has no value."""

    def get(self, key: CredentialKey) -> str | None: ...


class StaticSecretBackend:
    """A backend over a mapping; for tests and for secrets injected by an orchestrator."""

    def __init__(self, values: Mapping[CredentialKey, str]) -> None:
        self._values = dict(values)

    def get(self, key: CredentialKey) -> str | None:
        return self._values.get(key)


class CredentialResolver:
    """Looks a key up in the backend, then `MLMESH_<PROVIDER>_<NAME>` (and known aliases), then the
    file `<credentials_dir>/<provider>/<name>`. The first non-empty value wins."""

    def __init__(
        self,
        credentials_dir: Path | None,
        *,
        backend: SecretBackend | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._dir = credentials_dir
        self._backend = backend
        self._environ = os.environ if environ is None else environ

    def resolve(self, key: CredentialKey) -> Secret | None:
        if self._backend is not None:
            value = self._backend.get(key)
            if value and value.strip():
                return Secret(value.strip(), "backend")
        for var in (key.env_var, *ENV_ALIASES.get((key.provider, key.name), ())):
            value = self._environ.get(var, "")
            if value.strip():
                return Secret(value.strip(), f"env {var}")
        return self._from_file(key)

    def require(self, key: CredentialKey) -> Secret:
        secret = self.resolve(key)
        if secret is None:
            raise FailedPrecondition(f"no credential {key} is configured (set {key.env_var} or a token file)")
        return secret

    def _from_file(self, key: CredentialKey) -> Secret | None:
        if self._dir is None:
            return None
        path = self._dir / key.provider / key.name
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FailedPrecondition(f"credential file {path} cannot be read ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            raise FailedPrecondition(f"credential file {path} is not a regular file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("credential file %s is accessible to group/others; chmod 600 it", path)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise FailedPrecondition(f"credential file {path} cannot be read ({type(exc).__name__})") from None
        return Secret(value, f"file {path}") if value else None
