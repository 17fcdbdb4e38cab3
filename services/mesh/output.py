"""What the `mlmesh` command prints: JSON for machines, rich tables for people, one red line for errors."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC
from typing import Any, NoReturn, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from services.core.errors import MLMeshError

T = TypeVar("T")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# Exit codes scripts can rely on: 2 bad input, 3 not found, 1 anything else.
EXIT_CODES = {grpc.StatusCode.INVALID_ARGUMENT: 2, grpc.StatusCode.NOT_FOUND: 3}


def console() -> Console:
    # Built per call so a redirected sys.stdout (tests, pipes) is the one written to.
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def to_dict(message: Message) -> dict[str, Any]:
    return _whole_numbers(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _whole_numbers(value: Any) -> Any:
    # Struct numbers are doubles: layer sizes would print as 32.0. JSON-wise 32 is the same number.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def print_json(value: Any) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def fail(message: str, code: int = 1) -> NoReturn:
    message = " ".join(message.split())   # one line, even for messages that quote a multi-line parser error
    err_console().print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def fail_with(exc: MLMeshError) -> NoReturn:
    fail(escape(str(exc)), EXIT_CODES.get(exc.code, 1))


def run(awaitable: Awaitable[T]) -> T:
    """Run one command's async work; domain errors become one red line and an exit code, never a traceback."""
    try:
        return asyncio.run(awaitable)  # type: ignore[arg-type]
    except MLMeshError as exc:
        fail_with(exc)
    except grpc.aio.AioRpcError as exc:  # a call made outside MeshClient's translation
        fail(escape(f"{exc.code().name}: {exc.details()}"), EXIT_CODES.get(exc.code(), 1))
    except ValidationError as exc:  # MLMESH_* settings that do not parse
        fail_settings(exc)


def fail_settings(exc: ValidationError) -> NoReturn:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or exc.title
    fail(escape(f"settings: MLMESH_{where.upper()}: {first['msg']}"), 2)


def table(title: str | None, columns: Sequence[str | tuple[str, dict[str, Any]]],
          rows: Iterable[Sequence[Any]]) -> Table:
    """A table; a column is a header, or (header, rich column options) e.g. ("id", {"no_wrap": True})."""
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        header, options = (column, {}) if isinstance(column, str) else column
        out.add_column(header, **{"overflow": "fold", **options})
    for row in rows:
        out.add_row(*(_cell(v) for v in row))
    return out


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return escape(str(value))


def escape(text: str) -> str:
    # Names like "[prod]" must print as written, not as rich markup.
    return rich_escape(text)


def when(message: Message, field: str) -> str:
    """A Timestamp field as UTC text, or '' when unset."""
    if not message.HasField(field):
        return ""
    return getattr(message, field).ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def short(digest: str, keep: int = 12) -> str:
    """`sha256:abcdef…` shortened for tables; JSON output always carries the full id."""
    prefix, sep, hexpart = digest.rpartition(":")
    return f"{prefix}{sep}{hexpart[:keep]}" if len(hexpart) > keep else digest


def shorten_hashes(text: str, keep: int = 12) -> str:
    """Every 64-hex digest inside `text` cut to `keep` digits and an ellipsis (tables only)."""
    return _HEX64.sub(lambda m: m.group(0)[:keep] + "…", text)


def alias_names(aliases: Iterable[str]) -> str:
    """`name@prod, name@latest` -> `latest, prod` (the name is in its own column)."""
    return ", ".join(sorted(a.rpartition("@")[2] for a in aliases))


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
