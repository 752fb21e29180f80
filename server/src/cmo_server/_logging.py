"""Logging set-up for the server process: text or JSON lines, run context in every record.

Records logged with `extra={"run_id": ..., "step_index": ..., "attempt": ...}` (the engine's and
the SDK worker's do) show those fields in both formats, and so do the ids of the current span
when a trace is being recorded, so a log line leads to its run and its trace. Any other field
given in `extra` (the start-up `config`, say) is a field of the line too: a JSON value in JSON
lines, `key=<JSON>` in text.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace

__all__ = ["configure_logging", "log_formatter", "log_soon"]

_CONTEXT = ("run_id", "step_index", "attempt", "worker_id")
# What every record has: anything else on one came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, object]:
    """The record's run context, its other extra fields, then the current span's trace and span ids (hex)."""
    fields: dict[str, object] = {k: getattr(record, k) for k in _CONTEXT if hasattr(record, k)}
    fields.update(
        (k, v) for k, v in vars(record).items() if k not in _STANDARD and k not in fields and not k.startswith("_")
    )
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = trace.format_trace_id(span.trace_id)
        fields["span_id"] = trace.format_span_id(span.span_id)
    return fields


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            # ISO 8601 in UTC, to the millisecond, with its offset: sortable and unambiguous.
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, the run context as key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _context(record)
        return line + "".join(f" {k}={_text(v)}" for k, v in fields.items()) if fields else line


def _text(value: object) -> str:
    """A field's value in a text line: as it prints, or as JSON when it is a structure."""
    return json.dumps(value, default=str) if isinstance(value, dict | list | tuple) else str(value)


def log_formatter(fmt: str) -> logging.Formatter:
    """The formatter of `fmt`: "json" (one object a line) or "text"."""
    return _JsonFormatter() if fmt == "json" else _TextFormatter()


def configure_logging(level: str, fmt: str) -> None:
    """Install one stderr handler on the root logger (only entry points call this)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("grpc").setLevel(max(logging.getLevelName(level), logging.WARNING))


def log_soon(
    logger: logging.Logger, level: int, msg: str, *args: object, extra: dict[str, object] | None = None
) -> None:
    """Log on the running event loop's next turn (in the caller's context: its span), else now.

    For a record on a call's path that the call's answer need not wait for: formatting and
    writing a line costs more than most of what the call does.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        logger.log(level, msg, *args, extra=extra)
        return
    # call_soon runs the callback in a copy of the current context, so the record sees the span.
    loop.call_soon(functools.partial(logger.log, level, msg, *args, extra=extra))
