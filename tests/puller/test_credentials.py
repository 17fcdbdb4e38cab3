"""CredentialResolver: backend, environment, token file; a Secret never prints its value."""

import logging

import pytest

from services.core.errors import FailedPrecondition, InvalidArgument
from services.puller.credentials import CredentialKey, CredentialResolver, Secret, StaticSecretBackend

KEY = CredentialKey("huggingface", "api_token")


def _write(tmp_path, value, mode=0o600):
    path = tmp_path / "credentials" / "huggingface" / "api_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(mode)
    return path


def test_order_backend_then_env_then_file(tmp_path):
    _write(tmp_path, "from-file\n")
    env = {"MLMESH_HUGGINGFACE_API_TOKEN": "from-env", "HF_TOKEN": "from-alias"}
    backend = StaticSecretBackend({KEY: "from-backend"})
    resolve = lambda **kw: CredentialResolver(tmp_path / "credentials", **kw).resolve(KEY)  # noqa: E731
    assert resolve(backend=backend, environ=env).reveal() == "from-backend"
    assert resolve(environ=env).reveal() == "from-env"
    assert resolve(environ={"HF_TOKEN": "from-alias"}).reveal() == "from-alias"
    found = resolve(environ={})
    assert found.reveal() == "from-file" and found.origin.startswith("file ")
    assert CredentialResolver(tmp_path / "nothing", environ={}).resolve(KEY) is None


def test_secret_is_masked_everywhere(caplog):
    secret = Secret("hf_supersecret", "env X")
    logging.getLogger("t").warning("token %s %r %s", secret, secret, [secret])
    assert "hf_supersecret" not in caplog.text and "***" in caplog.text
    assert "hf_supersecret" not in f"{secret} {secret!r}"
    with pytest.raises(TypeError):
        __import__("pickle").dumps(secret)


def test_file_problems_name_the_file_not_the_value(tmp_path, caplog):
    path = _write(tmp_path, "hf_groupreadable", mode=0o640)
    resolver = CredentialResolver(tmp_path / "credentials", environ={})
    assert resolver.resolve(KEY).reveal() == "hf_groupreadable"
    assert str(path) in caplog.text and "hf_groupreadable" not in caplog.text
    path.unlink()
    path.mkdir()
    with pytest.raises(FailedPrecondition) as caught:
        resolver.resolve(KEY)
    assert "not a regular file" in caught.value.message
    with pytest.raises(FailedPrecondition) as missing:
        CredentialResolver(None, environ={}).require(CredentialKey("torchhub", "allowlist"))
    assert "MLMESH_TORCHHUB_ALLOWLIST" in missing.value.message


@pytest.mark.parametrize("provider, name", [("Hugging", "x"), ("hf", "../x"), ("", "x")])
def test_bad_keys(provider, name):
    with pytest.raises(InvalidArgument):
        CredentialKey(provider, name)
