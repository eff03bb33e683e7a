"""Masking of credentials in everything tether shows: logs, errors, reprs and CLI output.

Two things are masked: values of sensitive headers and query parameters (by name, whatever their value), and
every secret value resolved from ``tether.toml`` (by value, wherever it appears). Resolved values are registered
process-wide because a secret must stay hidden in any text tether produces, including text built far from the
integration that owns it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "RedactingFilter",
    "install_log_filters",
    "is_sensitive_name",
    "redact_headers",
    "redact_text",
    "redact_url",
    "register_secret",
    "register_sensitive_name",
]

MASK = "***"

_SENSITIVE_NAMES = {
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "api_key",
    "x-auth-token",
    "access_token",
    "refresh_token",
    "client_secret",
    "password",
    "token",
    "key",
    "secret",
    "signature",
    "sig",
}
_SENSITIVE_PARTS = ("secret", "token", "password", "api-key", "api_key", "apikey", "signature")
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words everywhere

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in text tether produces from now on."""
    global _secrets, _pattern
    if len(value) < _MIN_SECRET_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets = _secrets | {value}
        # Longest first so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def register_sensitive_name(name: str) -> None:
    """Treat a header or query parameter called ``name`` as sensitive (e.g. a configured API-key header)."""
    _SENSITIVE_NAMES.add(name.lower())
    _sensitive.cache_clear()


def is_sensitive_name(name: str) -> bool:
    """Whether a header or query parameter name carries credentials."""
    return _sensitive(name.lower())


# Cached: the webhook receiver asks for every header of every request, and header names repeat.
@functools.lru_cache(maxsize=4096)
def _sensitive(lowered: str) -> bool:
    return lowered in _SENSITIVE_NAMES or any(part in lowered for part in _SENSITIVE_PARTS)


_QUERY_PAIR = re.compile(r"([?&])([^=&\s\"']+)=([^&\s\"']*)")


def redact_text(text: str) -> str:
    """Mask every registered secret value and every sensitive query parameter found in ``text``."""
    if "=" in text:
        text = _QUERY_PAIR.sub(_mask_pair, text)
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


def _mask_pair(match: re.Match[str]) -> str:
    if is_sensitive_name(match.group(2)):
        return f"{match.group(1)}{match.group(2)}={MASK}"
    return match.group(0)


def redact_url(url: object) -> str:
    """The URL as text with sensitive query parameters, user info and secret values masked."""
    text = str(url)
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_sensitive_name(name) for name, _ in pairs):
            query = urlencode([(n, MASK if is_sensitive_name(n) else v) for n, v in pairs], safe="*")
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` with credential-bearing values masked."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: MASK if is_sensitive_name(name) else redact_text(value) for name, value in items}


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets and sensitive query parameters in a record's message.

    tether builds its own log records from redacted parts already; this filter is for ``httpx2``'s logger,
    whose request line includes the full URL and so a query-parameter API key. A filter on a logger is the
    one thing tether adds to logging; handlers, levels and formats stay the application's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_installed = False


def install_log_filters() -> None:
    """Attach :class:`RedactingFilter` to the ``httpx2`` logger, once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger("httpx2").addFilter(RedactingFilter())
