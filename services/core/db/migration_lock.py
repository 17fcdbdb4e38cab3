"""migrations/LOCK: the SHA-256 of every landed migration, so a changed or deleted one fails CI.

One line per file, `<sha256>  versions/<file>.py` (the `sha256sum` layout). Recording only ever adds
lines for new files; a changed file is fixed by restoring it and writing a new revision instead.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

LOCK_FILE = "LOCK"
VERSIONS = "versions"
_LINE = re.compile(r"^([0-9a-f]{64})  (versions/[A-Za-z0-9_.\-]+\.py)$")


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migration_files(root: Path) -> list[str]:
    """`versions/<file>.py` for each migration under `root` (the migrations folder), sorted."""
    folder = root / VERSIONS
    if not folder.is_dir():
        return []
    return sorted(f"{VERSIONS}/{p.name}" for p in folder.glob("*.py") if p.is_file())


def read_lock(root: Path) -> tuple[dict[str, str], list[str]]:
    """(entries path -> sha256, problems with the LOCK file itself)."""
    path = root / LOCK_FILE
    entries: dict[str, str] = {}
    problems: list[str] = []
    if not path.exists():
        return entries, problems
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            problems.append(f"{LOCK_FILE}:{number}: not a `<sha256>  versions/<file>.py` line: {line!r}")
        elif match.group(2) in entries:
            problems.append(f"{LOCK_FILE}:{number}: {match.group(2)} is listed twice")
        else:
            entries[match.group(2)] = match.group(1)
    return entries, problems


def check(root: Path) -> list[str]:
    """Every way the migrations under `root` disagree with their LOCK; empty when all is well."""
    root = Path(root)
    entries, problems = read_lock(root)
    present = set(migration_files(root))
    for name, digest in entries.items():
        if name not in present:
            problems.append(f"{name}: deleted, but LOCK records it (landed migrations must stay)")
        elif _hash(root / name) != digest:
            problems.append(
                f"{name}: changed since it was locked (landed migrations are immutable: restore it "
                "and add a new revision)"
            )
    for name in sorted(present - entries.keys()):
        problems.append(f"{name}: not in LOCK (run scripts/migration_lock.py --record)")
    return problems


def record(root: Path) -> list[str]:
    """Append LOCK lines for migrations it lacks and return them; existing lines are never touched."""
    root = Path(root)
    entries, _ = read_lock(root)
    added = [f"{_hash(root / name)}  {name}" for name in migration_files(root) if name not in entries]
    if added:
        path = root / LOCK_FILE
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        if existing and not existing.endswith("\n"):
            existing += "\n"
        path.write_text(existing + "".join(line + "\n" for line in added), encoding="utf-8")
    return added
