"""Parsing of durations written by people: ``30``, ``2.5``, ``"500ms"``, ``"1m30s"``, ``"6m0s"``."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: float | int | str) -> float:
    """Return ``value`` in seconds.

    Accepts a number of seconds or a string of one or more ``<number><unit>`` parts with the units
    ``ms``, ``s``, ``m``, ``h`` and ``d`` (``"1m30s"``, ``"250ms"``, ``"1.5s"``). A bare numeric string
    is seconds.

    Raises:
        ValueError: ``value`` is negative, not finite, or not a duration.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '500ms' or '1m30s', got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30, '500ms' or '1m30s', got {type(value).__name__}")
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_parts(text)
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        raise ValueError(f"expected a non-negative, finite duration, got {value!r}")
    return seconds


def _parse_parts(text: str) -> float:
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"expected a duration such as 30, '500ms' or '1m30s', got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """``seconds`` the way tether.toml writes durations: ``"300ms"``, ``"45s"``, ``"5m"``, ``"1h30m"``, ``"14d"``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = round(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
