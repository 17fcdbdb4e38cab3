"""Process logs: one JSON object per line on stderr (or plain text), every line scrubbed of credentials.

A JSON line: time, level, service, logger, message, request_id, trace_id, span_id, subject (the verified
caller), and `exception` when there is one. The request id and subject come from the record when the
logger put them there (the access log does: it writes after the call's context is reset), else from the
call being served (contextvars the interceptor sets); trace and span ids from the current span.

No secret is ever written: `redact` replaces bearer tokens, JWTs (`eyJ...`) and `authorization` values
with `[REDACTED]` in the message, its arguments and the exception text before a line is formatted, and
the formatted line is scrubbed once more (a token inside an object's repr, a traceback's locals).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

from opentelemetry import trace

from services.core.auth.principal import current_principal

REDACTED = "[REDACTED]"
_TOKEN = r"[^\s'\",;)\]}\[]+"
_SECRETS = re.compile(
    r"(eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){0,2})"                       # 1: a JWT (or its header)
    r"|((?i:bearer)\s+)" + _TOKEN +                                          # 2: what follows Bearer
    r"|((?i:authorization)['\"]?\s*[:=,]\s*['\"]?(?:[A-Za-z]+\s+)?)" + _TOKEN  # 3: authorization: [scheme] x
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _replace(match: re.Match) -> str:
    return (match.group(2) or match.group(3) or "") + REDACTED


def redact(text: str) -> str:
    return _SECRETS.sub(_replace, text) if text else text


def _request_id() -> str | None:
    # Imported late: the interceptor module imports this package's tracing, not the other way round.
    from services.core.grpc.interceptor import current_request_id

    return current_request_id()


class RedactionFilter(logging.Filter):
    """Scrubs a record's message (with its arguments merged in) and exception text in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string still gets logged, as its raw text
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _utc(record.created), "level": record.levelname, "service": self.service,
            "logger": record.name, "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id(),
            "trace_id": None, "span_id": None,
            "subject": getattr(record, "subject", None) or _subject(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"], line["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return redact(json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _subject() -> str | None:
    principal = current_principal()
    return principal.subject if principal is not None else None


def service_name_of_process() -> str:
    """`registry` for `python -m services.registry`; the script name otherwise (`mlmesh-ml-mcp`)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.startswith("services."):
        return spec.name.split(".")[1]
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "mlmesh"


def make_handler(stream, *, service: str, log_format: str = "json") -> logging.Handler:
    """A redacting handler writing one line per record to `stream`, JSON or plain text."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter(TEXT_FORMAT))
    return handler


def install_logging(level: str | int = "INFO", *, service: str | None = None, log_format: str = "json") -> None:
    """The root logger's only handler (replacing any): stderr, redacting, in the chosen format."""
    handler = make_handler(sys.stderr, service=service or service_name_of_process(), log_format=log_format)
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, handlers=[handler], force=True)
