"""Parsers for the headers in which servers say how long to wait.

Pure functions of header text and a wall-clock ``now``; they never raise on bad input (a malformed header
is treated as absent, since a server's typo must not fail the call).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from tether._durations import parse_duration

__all__ = ["parse_rate_limit_reset", "parse_retry_after", "retry_wait_from_headers"]

# A reset above this is an epoch timestamp, not a delta (about 2001-09-09; no API asks for a 30-year wait).
_EPOCH_THRESHOLD = 1_000_000_000
_INT = re.compile(r"^\s*\d+(\.\d+)?\s*$")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if _INT.match(value):
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_rate_limit_reset(value: str | None, *, now: float) -> float | None:
    """Seconds until a rate-limit window resets.

    Accepts epoch seconds (GitHub's ``X-RateLimit-Reset``), delta seconds (IETF ``RateLimit-Reset``) and
    durations such as ``"12ms"`` or ``"6m0s"`` (OpenAI's ``x-ratelimit-reset-requests``).
    """
    if not value:
        return None
    value = value.strip()
    if _INT.match(value):
        number = float(value)
        if not math.isfinite(number):
            return None
        return max(0.0, number - now) if number > _EPOCH_THRESHOLD else number
    try:
        return parse_duration(value)
    except ValueError:
        return None


_RESET_HEADERS = ("x-ratelimit-reset", "ratelimit-reset", "x-ratelimit-reset-requests", "x-rate-limit-reset")


def retry_wait_from_headers(headers: Mapping[str, str], *, now: float) -> float | None:
    """The wait a 429/503 response asks for: ``Retry-After`` first, then rate-limit reset headers."""
    wait = parse_retry_after(headers.get("retry-after"), now=now)
    if wait is not None:
        return wait
    for name in _RESET_HEADERS:
        wait = parse_rate_limit_reset(headers.get(name), now=now)
        if wait is not None:
            return wait
    return None
