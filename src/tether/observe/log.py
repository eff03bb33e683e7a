"""One structured log record per attempt and per call, on the ``tether`` logger.

Each record carries its fields in ``record.tether`` (a dict) so a JSON formatter can emit them as they are;
the message is a readable one-liner built from the same fields. Everything in them is already redacted. The
library never configures logging: without a handler nothing is printed, and a disabled level costs one check.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["log_attempt", "log_call", "log_transition", "logger"]

logger = logging.getLogger("tether")
# Without this, Python's last-resort handler would print warnings of an application that set up no logging.
logger.addHandler(logging.NullHandler())


def log_attempt(fields: dict[str, Any], *, failed: bool) -> None:
    """Log one attempt: DEBUG when it succeeded, INFO when it failed and will be retried or reported."""
    level = logging.INFO if failed else logging.DEBUG
    if not logger.isEnabledFor(level):
        return
    outcome = fields.get("status") or fields.get("error")
    wait = f" → retry in {fields['wait']:.2f}s" if fields.get("wait") else ""
    message = (
        f"{fields['integration']} {fields['method']} {fields['path']} attempt {fields['attempt']}: "
        f"{outcome} in {fields['elapsed']:.3f}s{wait}"
    )
    logger.log(level, message, extra={"tether": {"event": "attempt", **fields}})


def log_call(fields: dict[str, Any], *, failed: bool) -> None:
    """Log one logical call: INFO when it succeeded, WARNING when it failed."""
    level = logging.WARNING if failed else logging.INFO
    if not logger.isEnabledFor(level):
        return
    outcome = fields.get("status") or fields.get("error")
    message = (
        f"{fields['integration']} {fields['method']} {fields['path']}: {outcome} "
        f"({fields['outcome']}, {fields['attempts']} attempt{'s' if fields['attempts'] != 1 else ''}, "
        f"{fields['elapsed']:.3f}s)"
    )
    logger.log(level, message, extra={"tether": {"event": "call", **fields}})


def log_transition(integration: str, state: str, *, backend: str) -> None:
    """Log a circuit breaker changing state (WARNING when it opens, INFO otherwise)."""
    level = logging.WARNING if state == "open" else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields = {"event": "breaker", "integration": integration, "state": state, "backend": backend}
    logger.log(level, f"{integration}: circuit breaker {state.replace('_', '-')}", extra={"tether": fields})
