"""Logging set-up for the CLI (the library itself never configures logging)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from tether.observe.redact import RedactingFilter, redact_text

__all__ = ["configure_logging"]


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and tether's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        fields = getattr(record, "tether", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines; the whole line is redacted, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(log_format: str, verbosity: int) -> None:
    """Send logs to stderr in ``json`` or ``text``.

    ``verbosity`` 0 shows errors only (the commands print each call's outcome themselves), 1 adds one line per
    call and per failed attempt, 2 every attempt and httpx2's request lines.
    """
    level = logging.ERROR if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("tether").setLevel(level)
    logging.getLogger("httpx2").setLevel(logging.INFO if verbosity >= 2 else logging.WARNING)
