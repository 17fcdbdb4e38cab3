"""Migrations build exactly schema.metadata, run safely in parallel, and are locked against edits."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.core.db import make_engine, metadata, upgrade_to_head
from services.core.db.migrate import MIGRATIONS_DIR, alembic_config, current_revision
from services.core.db.migration_lock import check, record

ROOT = Path(__file__).resolve().parents[2]
HEAD = "0002"


async def _diff(engine, target: sa.MetaData) -> list:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), target))


async def test_migrated_schema_matches_metadata(engine):
    assert await current_revision(engine) == HEAD
    assert await _diff(engine, metadata) == []


async def test_the_comparison_would_catch_a_drift(engine):
    drifted = sa.MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["operations"].append_column(sa.Column("extra", sa.Integer, nullable=True))
    diff = await _diff(engine, drifted)
    assert [entry[0] for entry in diff] == ["add_column"]


async def test_0002_keeps_older_compiled_records_unsigned(database_url):
    """Rows registered before 0002 survive it with no signature (serving refuses them until recompiled)."""
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0001"))
            await conn.execute(sa.text(
                "INSERT INTO artifacts (id, name, manifest_json, framework, format, total_size, labels, source_uri, "
                "signature_media_type, signature_bundle, signature_key_id, created_by, created_at) VALUES "
                "('sha256:a', 'a', '{}', 'torch', 'safetensors', 1, '{}', 'local', '', NULL, '', 't', :now)"
            ), {"now": datetime.now(UTC)})
            await conn.execute(sa.text(
                "INSERT INTO ml_compiled_artifacts (id, source_artifact_id, compiler, target, sha256, size, files, "
                "kwargs, tool_versions, validation, triton_platform, created_by, created_at) VALUES "
                "('sha256:c', 'sha256:a', 'onnx', 'onnx', 'x', 1, '[]', '{}', '{}', '{}', '', 't', :now)"
            ), {"now": datetime.now(UTC)})
        await upgrade_to_head(engine)
        assert await current_revision(engine) == HEAD
        async with engine.connect() as conn:
            row = (await conn.execute(sa.text(
                "SELECT signature_media_type, signature_bundle, signature_key_id FROM ml_compiled_artifacts"
            ))).one()
        assert tuple(row) == ("", None, "")
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_from_many_engines(database_url):
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(upgrade_to_head(e) for e in engines))
        await upgrade_to_head(engines[0])  # and once more: nothing left to do
        assert {await current_revision(e) for e in engines} == {HEAD}
        assert await _diff(engines[0], metadata) == []
    finally:
        for e in engines:
            await e.dispose()


async def test_downgrade_to_base_and_back(engine):
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
    async with engine.connect() as conn:
        left = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert left == ["alembic_version"]
    await upgrade_to_head(engine)
    assert await _diff(engine, metadata) == []


async def test_alembic_command_line_uses_mesh_settings(database_url):
    env = {**os.environ, "MLMESH_DATABASE_URL": database_url}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    engine = make_engine(database_url)
    try:
        assert await current_revision(engine) == HEAD
    finally:
        await engine.dispose()


def test_revisions_never_build_tables_from_the_live_schema():
    imports_services = re.compile(r"^\s*(from|import)\s+services\b", re.MULTILINE)
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        assert not imports_services.search(path.read_text()), f"{path.name} imports services: spell tables out"


# migrations/LOCK


def test_repository_lock_is_clean():
    assert check(MIGRATIONS_DIR) == []


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_a_changed_migration_is_reported(tmp_path):
    copy = _copy(tmp_path)
    target = copy / "versions" / "0001_initial.py"
    target.write_text(target.read_text() + "\n# a harmless-looking edit\n")
    problems = check(copy)
    assert len(problems) == 1 and problems[0].startswith("versions/0001_initial.py: changed")
    assert record(copy) == []  # recording never blesses an edit
    assert check(copy) == problems


def test_a_deleted_migration_is_reported(tmp_path):
    copy = _copy(tmp_path)
    (copy / "versions" / "0001_initial.py").unlink()
    problems = check(copy)
    assert len(problems) == 1 and problems[0].startswith("versions/0001_initial.py: deleted")


def test_a_new_migration_must_be_recorded_and_record_only_appends(tmp_path):
    copy = _copy(tmp_path)
    before = (copy / "LOCK").read_text()
    (copy / "versions" / "0099_more.py").write_text('revision = "0099"\n')
    assert check(copy) == ["versions/0099_more.py: not in LOCK (run scripts/migration_lock.py --record)"]
    added = record(copy)
    assert len(added) == 1 and added[0].endswith("  versions/0099_more.py")
    after = (copy / "LOCK").read_text()
    assert after.startswith(before) and after == before + added[0] + "\n"
    assert check(copy) == []


def test_a_malformed_lock_line_is_reported(tmp_path):
    copy = _copy(tmp_path)
    line = len((copy / "LOCK").read_text().splitlines()) + 1
    with (copy / "LOCK").open("a") as lock:
        lock.write("nonsense\n")
    assert [p for p in check(copy) if p.startswith(f"LOCK:{line}:")]


def _lock_cli():
    spec = importlib.util.spec_from_file_location("migration_lock_cli", ROOT / "scripts" / "migration_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_runs_as_a_script_on_the_repository():
    done = subprocess.run([sys.executable, "scripts/migration_lock.py", "--check"], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_cli_check_and_record(tmp_path, capsys):
    main, copy = _lock_cli(), _copy(tmp_path)
    assert main(["--check", "--migrations", str(copy)]) == 0
    (copy / "versions" / "0099_more.py").write_text('revision = "0099"\n')
    assert main(["--check", "--migrations", str(copy)]) == 1
    assert "versions/0099_more.py: not in LOCK" in capsys.readouterr().err
    assert main(["--record", "--migrations", str(copy)]) == 0
    assert "recorded" in capsys.readouterr().out
    assert main(["--check", "--migrations", str(copy)]) == 0
