"""The backend proxy's rules, without I/O: which paths are safe, what an integration exposes, which headers cross.

:mod:`tether.server.proxy` drives them. Everything here works on the request's raw bytes, before any decoding
a server or a URL library would do, because that is where an escape hides.

A path is refused (400) when it could reach anything but the integration's ``base_url``, or when an API server
might read it differently from the proxy:

- outside RFC 3986's path characters (``@`` excluded too): backslashes, spaces, quotes, control characters,
  raw non-ASCII bytes, a malformed ``%`` escape;
- an empty segment (``//``), or a segment that is only dots once decoded (``.``, ``..``, ``%2e%2E``, ``..;x``
  as Tomcat reads it, ``．．`` as Unicode normalisation reads it);
- a segment that decodes to ``/``, ``\\``, ``@``, ``%`` (double encoding, ``%252e``) or a control character;
- a first segment with a colon, which a URL parser would take for a scheme (``/proxy/x/http:…``); RFC 3986
  forbids it in a relative path for that reason.

Each segment is checked as decoded and again after NFKC normalisation, since some servers fold full-width
characters to ASCII. Whatever passes is forwarded as the browser sent it, and the URL built from it is checked
once more: same scheme, host, port and credentials as ``base_url``, and a path under ``base_url``'s.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

import httpx2

from tether.config.models import IntegrationConfig
from tether.policies.endpoints import EndpointRules

__all__ = [
    "ALL_METHODS",
    "EXPOSED_RESPONSE_HEADERS",
    "FORWARDED_REQUEST_HEADERS",
    "PREFLIGHT_MAX_AGE",
    "TOKEN_HEADER",
    "Exposure",
    "PathRefused",
    "checked_path",
    "checked_query",
    "response_headers",
]

# What a request's own headers may carry to the API. Everything else stays behind: Host (the URL decides),
# Authorization and Cookie (the browser's, never the API's credentials), the proxy token, Forwarded and
# X-Forwarded-*, hop-by-hop headers, and whatever else a page could use to steer the API or spoof its caller.
FORWARDED_REQUEST_HEADERS = (
    "accept",
    "accept-language",
    "content-encoding",
    "content-language",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "range",
)
# Response headers a page's script may read besides the CORS-safelisted ones.
EXPOSED_RESPONSE_HEADERS = "ETag, Link, Location, Retry-After, X-Request-Id"
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer
ALL_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
TOKEN_HEADER = "X-Tether-Proxy-Token"  # noqa: S105 (the header that may carry the proxy token, not a token)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Also dropped from the API's answers: cookies (they would land on tether's origin, shared by every page that
# uses the proxy); its own auth challenge, HSTS, Alt-Svc and Clear-Site-Data, which would apply to tether's
# origin rather than the API's; its CORS headers (tether answers CORS itself); framing headers the server
# writes for the body tether sends (decoded, so without Content-Encoding); Date and Server, which it writes too.
_DROPPED = _HOP_BY_HOP | {
    "alt-svc",
    "clear-site-data",
    "content-encoding",
    "content-length",
    "date",
    "public-key-pins",
    "server",
    "set-cookie",
    "set-cookie2",
    "strict-transport-security",
    "www-authenticate",
}
_PATH_BYTES = frozenset((string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%/" + "|^[]").encode())
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class PathRefused(ValueError):
    """A proxied path or query that could leave the integration's base URL, or that is malformed."""


def checked_path(raw: bytes) -> str:
    """The path relative to ``base_url`` (decoded, for matching) of the raw bytes after ``/proxy/NAME``.

    Raises:
        PathRefused: the path is not safe to forward; the message says why, without echoing it.
    """
    if not raw.startswith(b"/"):
        raise PathRefused("expected /proxy/NAME/PATH")
    for byte in raw:
        if byte not in _PATH_BYTES:
            raise PathRefused(_describe(byte))
    segments = raw[1:].split(b"/")
    decoded = []
    for index, segment in enumerate(segments):
        if not segment and index < len(segments) - 1:
            raise PathRefused("an empty path segment ('//')")
        text = _decoded(segment)
        for form in (text, unicodedata.normalize("NFKC", text)):
            _check_segment(form, first=index == 0)
        decoded.append(text)
    return "/" + "/".join(decoded)


def checked_query(raw: bytes) -> bytes:
    """The raw query string, passed through as sent once it holds only printable ASCII (no ``#``).

    Raises:
        PathRefused: it holds something else.
    """
    for byte in raw:
        if byte < 0x21 or byte > 0x7E or byte == ord("#"):
            raise PathRefused("a query string with a character that must be percent-encoded")
    return raw


def _describe(byte: int) -> str:
    if byte == ord("\\"):
        return "a backslash in the path"
    if byte == ord("@"):
        return "an '@' in the path (it would read as credentials before a host)"
    if byte < 0x20 or byte == 0x7F:
        return "a control character in the path"
    if byte > 0x7F:
        return "a byte outside ASCII in the path (percent-encode it)"
    return f"the character {chr(byte)!r} in the path (percent-encode it)"


def _decoded(segment: bytes) -> str:
    at = segment.find(b"%")
    while at != -1:
        if len(segment) < at + 3 or segment[at + 1] not in _HEX or segment[at + 2] not in _HEX:
            raise PathRefused("a malformed percent escape in the path")
        at = segment.find(b"%", at + 3)
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused("a path segment that is not UTF-8 once decoded") from None


def _check_segment(text: str, *, first: bool) -> None:
    if "/" in text or "\\" in text:
        raise PathRefused("an encoded slash or backslash (%2F, %5C) in a path segment")
    if "%" in text:
        raise PathRefused("a double-encoded path (an encoded '%', as in %252e)")
    if "@" in text:
        raise PathRefused("an encoded '@' in the path")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in text):
        raise PathRefused("an encoded control character in the path")
    if text and not text.partition(";")[0].strip(". "):
        raise PathRefused("a '.' or '..' path segment (also encoded, or with ';' parameters)")
    if first and ":" in text:
        raise PathRefused("a first path segment with ':', which reads as a URL scheme (absolute URLs are refused)")


def response_headers(headers: httpx2.Headers) -> list[tuple[bytes, bytes]]:
    """The API's response headers a browser gets: without hop-by-hop ones, cookies and the others above."""
    named = {
        token.strip().lower() for value in headers.get_list("connection") for token in value.split(",") if token.strip()
    }
    kept = []
    for name, value in headers.raw:
        lower = name.lower().decode("latin-1")
        if lower in _DROPPED or lower in named or lower.startswith("access-control-"):
            continue
        kept.append((name.lower(), value))
    return kept


class Exposure:
    """What one integration exposes through the proxy: its allow list, its origins, its base URL.

    Make one with :meth:`of`.

    Attributes:
        name: The integration.
        allow: The ``proxy.allow`` patterns, each with its method (``GET`` when it had none).
        origins: The browser origins that may call it (``cors_origins``), normalised.
        base: ``base_url``.
        base_path: ``base_url``'s raw path without its trailing slash (``b""`` for ``/``).
        request_headers: The request headers forwarded (lower-case).
    """

    def __init__(
        self,
        name: str,
        allow: Iterable[str],
        *,
        origins: Iterable[str],
        base: httpx2.URL,
        request_headers: Iterable[str] = FORWARDED_REQUEST_HEADERS,
    ) -> None:
        self.name = name
        self.allow = tuple(_with_method(pattern) for pattern in allow)
        self.origins = frozenset(_origin(origin) for origin in origins)
        self.base = base
        self.base_path = base.raw_path.partition(b"?")[0].rstrip(b"/")
        self.request_headers = frozenset(header.lower() for header in request_headers)
        self._rules = EndpointRules((pattern, True) for pattern in self.allow)

    @classmethod
    def of(cls, name: str, config: IntegrationConfig) -> Exposure | None:
        """The exposure of integration ``name``, or ``None`` when it has no enabled ``proxy`` table."""
        if config.proxy is None or not config.proxy.enabled:
            return None
        headers = list(FORWARDED_REQUEST_HEADERS)
        if config.idempotency_header:
            headers.append(config.idempotency_header)
        return cls(
            name,
            config.proxy.allow,
            origins=config.cors_origins,
            base=httpx2.URL(str(config.base_url)),
            request_headers=headers,
        )

    def __repr__(self) -> str:
        return f"Exposure({self.name!r}, allow={list(self.allow)!r})"

    def allows(self, method: str, path: str) -> bool:
        """Whether ``method`` on ``path`` (relative to ``base_url``) matches a pattern; HEAD goes where GET does."""
        if self._rules.lookup(method, path) is not None:
            return True
        return method == "HEAD" and self._rules.lookup("GET", path) is not None

    def methods(self) -> list[str]:
        """Every method some pattern allows, sorted."""
        found: set[str] = set()
        for pattern in self.allow:
            method = pattern.partition(" ")[0].upper()
            found.update(ALL_METHODS if method == "*" else (method, "HEAD") if method == "GET" else (method,))
        return sorted(found)

    def url(self, raw_path: bytes, query: bytes) -> httpx2.URL:
        """The API's URL for a checked relative ``raw_path`` and ``query``, verified to stay under ``base_url``.

        Raises:
            PathRefused: the result is not under ``base_url`` (the checks above should make this impossible).
        """
        target = self.base.copy_with(raw_path=self.base_path + raw_path + (b"?" + query if query else b""))
        base = self.base
        same = (
            target.scheme == base.scheme
            and target.host == base.host
            and _port(target) == _port(base)
            and target.userinfo == base.userinfo
            and not target.fragment
        )
        if not same or not target.raw_path.startswith(self.base_path + b"/"):
            raise PathRefused("a path that would leave the integration's base URL")
        return target

    def allows_origin(self, origin: str | None) -> bool:
        """Whether ``origin`` (a request's ``Origin`` header) is one of ``cors_origins``."""
        return origin is not None and origin.lower() in self.origins

    def cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers of an answer to a request from ``origin``: none for an origin not configured."""
        headers = [("Vary", "Origin")] if self.origins else []
        if self.allows_origin(origin):
            assert origin is not None
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Expose-Headers", EXPOSED_RESPONSE_HEADERS),
            ]
        return headers

    def preflight_headers(self, origin: str) -> list[tuple[str, str]]:
        """The answer to a configured origin's preflight: the exact origin (never ``*``), methods and headers."""
        allowed = ["Authorization", TOKEN_HEADER, *sorted(_title(name) for name in self.request_headers)]
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", ", ".join(self.methods())),
            ("Access-Control-Allow-Headers", ", ".join(allowed)),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)),
            ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]

    def forwarded(self, items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The request headers (name, value) that go on to the API."""
        return [(name, value) for name, value in items if name.lower() in self.request_headers]


def _with_method(pattern: str) -> str:
    method, _, path = pattern.strip().rpartition(" ")
    return f"{(method.strip() or 'GET').upper()} {path}"


def _origin(origin: str) -> str:
    origin = origin.lower()
    for scheme, port in _DEFAULT_PORTS.items():
        if origin.startswith(f"{scheme}://") and origin.endswith(f":{port}"):
            return origin[: -len(f":{port}")]
    return origin


def _port(url: httpx2.URL) -> int | None:
    return url.port or _DEFAULT_PORTS.get(url.scheme)


def _title(header: str) -> str:
    return "-".join(part.capitalize() for part in header.split("-"))
