"""A developer's shell settings never reach the tests: a child pytest run under this suite's conftest, started
with MLMESH_DATABASE_URL, MLMESH_HOME, HF_TOKEN and OTEL_EXPORTER_OTLP_ENDPOINT pointing at "real" places,
sees none of them in a test, in a session fixture's copy of the environment, or in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD_TESTS = '''
import os
import subprocess
import sys

import pytest

from services.core.settings import MeshSettings

LEAKED = ("MLMESH_DATABASE_URL", "MLMESH_HOME", "HF_TOKEN", "OTEL_EXPORTER_OTLP_ENDPOINT")


@pytest.fixture(scope="session")
def mesh_env():
    """What a session-scoped fixture hands the meshes it starts (tests/e2e/conftest.py does this)."""
    return {**os.environ}


def test_a_session_fixtures_copy_of_the_environment_has_none_of_them(mesh_env):
    assert [key for key in LEAKED if key in mesh_env] == []


def test_a_child_process_sees_none_of_them():
    shown = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.environ))"], env={**os.environ},
                           capture_output=True, text=True, check=True).stdout
    assert [key for key in LEAKED if repr(key) in shown] == []


def test_the_mesh_settings_a_test_builds_are_not_the_developers():
    settings = MeshSettings()
    assert settings.database_url != os.environ.get("REAL_DATABASE_URL") and "real" not in settings.database_url


def test_a_careless_test_leaks_one(monkeypatch):
    os.environ["MLMESH_DATABASE_URL"] = os.environ["REAL_DATABASE_URL"]   # not through monkeypatch


def test_the_next_test_does_not_see_it():
    assert "MLMESH_DATABASE_URL" not in os.environ


def test_a_tests_own_setting_stands(monkeypatch):
    monkeypatch.setenv("MLMESH_HOME", "/tmp/a-test-home")
    assert MeshSettings().home == __import__("pathlib").Path("/tmp/a-test-home")


def test_the_suites_own_settings_stay():
    assert os.environ["MLMESH_TEST_POSTGRES_DSN"] == "postgresql://ci@127.0.0.1:5432/postgres"
'''


def test_shell_settings_are_cleared_for_every_test_and_every_mesh_it_starts(tmp_path):
    real = tmp_path / "real"
    (tmp_path / "test_child.py").write_text(CHILD_TESTS)
    env = {**os.environ, "REAL_DATABASE_URL": f"sqlite+aiosqlite:///{real / 'mlmesh.db'}",
           "MLMESH_DATABASE_URL": f"sqlite+aiosqlite:///{real / 'mlmesh.db'}", "MLMESH_HOME": str(real),
           "HF_TOKEN": "hf_real", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.real:4317",
           "MLMESH_TEST_POSTGRES_DSN": "postgresql://ci@127.0.0.1:5432/postgres"}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(tmp_path / "test_child.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr
    assert "7 passed" in child.stdout
    assert not real.exists()


def test_no_shell_setting_is_visible_inside_a_test():
    from tests.conftest import SHELL_SETTING_PREFIXES, SUITE_SETTINGS

    assert [key for key in os.environ if key.startswith(SHELL_SETTING_PREFIXES) and key not in SUITE_SETTINGS] == []
