"""The cache's and the fallback's decisions, without I/O: which rule applies to a request, what hishel's RFC 9111
state machine is shown, which stored response may stand in for a failed call.

Endpoint patterns are matched by :mod:`tether.policies.endpoints`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

import hishel
import httpx2
from hishel._core._headers import parse_cache_control
from hishel._core._spec import get_freshness_lifetime, vary_headers_match

from tether import errors
from tether.config.models import FallbackConfig, IntegrationConfig, StaticResponse
from tether.policies.endpoints import EndpointRules, relative_path

__all__ = [
    "CACHEABLE_METHODS",
    "CachePolicy",
    "EndpointRules",
    "age_of",
    "freshness_lifetime",
    "is_outage",
    "stale_candidate",
    "static_response",
    "storable",
]

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
# Methods whose success invalidates the cached responses of their URL (RFC 9111 section 4.4).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers not kept with a cached response: hop-by-hop ones are dropped by hishel; these are tether's choice.
# The body is stored decoded, so its encoding headers would lie; a stored Set-Cookie would set a cookie again
# on every hit.
_NOT_STORED = frozenset({"content-encoding", "transfer-encoding", "set-cookie"})
# Outages a fallback may stand in for. Not TLS errors (a refused certificate is a security or configuration
# problem that must surface), not 4xx (the API is up and said no), not tether's own rate limit.
_OUTAGES = (
    errors.CircuitOpenError,
    errors.RequestTimeoutError,
    errors.ConnectionFailedError,
    errors.ConnectionLostError,
    errors.ServerError,
)
_SHARED = False  # an API client is a private cache: one application, one set of credentials per key


@dataclass(frozen=True)
class CachePolicy:
    """One integration's cache and fallback settings, as rules.

    Attributes:
        serve: Answer from the cache (``cache`` is on); otherwise responses are only kept for fallback.
        ttl: Freshness lifetimes that replace the API's own, per endpoint.
        stale: Endpoints whose last good response may be served when the API is down.
        max_stale: How long after it stopped being fresh a response may still be served that way.
        static: Fixed responses per endpoint, for when there is no stale one.
        base_path: ``base_url``'s path, which patterns are relative to.
    """

    serve: bool = False
    ttl: EndpointRules[float] = field(default_factory=EndpointRules)
    stale: EndpointRules[bool] = field(default_factory=EndpointRules)
    max_stale: float = 86400.0
    static: EndpointRules[StaticResponse] = field(default_factory=EndpointRules)
    base_path: str = ""

    @classmethod
    def from_config(cls, config: IntegrationConfig) -> CachePolicy | None:
        """The policy of an integration, or ``None`` when it has neither cache nor fallback."""
        cache, fallback = config.cache, config.fallback
        if not cache.enabled and not fallback.configured:
            return None
        return cls(
            serve=cache.enabled,
            ttl=EndpointRules(cache.ttl if cache.enabled else {}),
            stale=_stale_rules(fallback),
            max_stale=fallback.max_stale,
            static=EndpointRules(fallback.static),
            base_path=(config.base_url.path or "").rstrip("/"),
        )

    @property
    def stores(self) -> bool:
        """Whether this policy ever needs the store."""
        return self.serve or bool(self.stale)

    def relative_path(self, url: httpx2.URL) -> str:
        """The request's path as the integration's code wrote it: relative to ``base_url``."""
        return relative_path(url.path, self.base_path)


def _stale_rules(fallback: FallbackConfig) -> EndpointRules[bool]:
    if fallback.stale is True:
        return EndpointRules({"/*": True})
    if isinstance(fallback.stale, list):
        return EndpointRules(dict.fromkeys(fallback.stale, True))
    return EndpointRules()


def is_outage(error: BaseException | None) -> bool:
    """Whether ``error`` is one a fallback may stand in for: the API is down or unreachable."""
    return isinstance(error, _OUTAGES)


def storable(
    status: int, headers: httpx2.Headers, body: bytes, *, ttl: float | None, now: float | None = None
) -> hishel.Response:
    """A network response as hishel's state machine sees it and the store keeps it.

    Adds a ``Date`` when the API sent none (RFC 9110 section 6.6.1: a cache must, or the entry's age would be
    unknown and it would never go stale). With a ``ttl`` override, the API's freshness headers are replaced by
    ``max-age=ttl`` (``no-store`` included: the override is the team's explicit decision for that endpoint);
    validators (``ETag``, ``Last-Modified``) are kept, so an expired entry is still revalidated cheaply.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in headers.multi_items():
        grouped.setdefault(name.lower(), []).append(value)
    if "content-encoding" in grouped and status != 304:
        grouped["content-length"] = [str(len(body))]
    for name in _NOT_STORED:
        grouped.pop(name, None)
    if "date" not in grouped:
        grouped["date"] = [formatdate(time.time() if now is None else now, usegmt=True)]
    if ttl is not None:
        for name in ("cache-control", "expires", "pragma"):
            grouped.pop(name, None)
        grouped["cache-control"] = [f"max-age={int(ttl)}"]
    return hishel.Response(status_code=status, headers=hishel.Headers(grouped), stream=iter((body,)))


def freshness_lifetime(response: hishel.Response) -> float:
    """Seconds ``response`` is fresh for, from its own headers (RFC 9111 section 4.2.1, heuristics included)."""
    return float(get_freshness_lifetime(response, is_cache_shared=_SHARED) or 0)


def age_of(response: hishel.Response, now: float) -> float:
    """Seconds since the API produced ``response`` (its ``Date``; RFC 9111 section 4.2.3, without Age)."""
    try:
        produced = parsedate_to_datetime(response.headers.get("date", "")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    return max(0.0, now - produced)


def stale_candidate(
    entries: Iterable[hishel.Entry], request: hishel.Request, *, max_stale: float, now: float
) -> tuple[hishel.Entry, float] | None:
    """The newest stored good response for ``request`` that is at most ``max_stale`` past its freshness.

    Responses marked ``must-revalidate`` are never served stale: RFC 9111 section 5.2.2.2 says "in all
    circumstances", disconnected included. Returns the entry and its age.
    """
    best: tuple[hishel.Entry, float] | None = None
    for entry in entries:
        response = entry.response
        if entry.request.method != request.method or entry.request.url != request.url:
            continue
        if not 200 <= response.status_code < 400 or not vary_headers_match(request, entry):
            continue
        if parse_cache_control(response.headers.get("cache-control")).must_revalidate:
            continue
        age = age_of(response, now)
        if age > freshness_lifetime(response) + max_stale:
            continue
        if best is None or age < best[1]:
            best = (entry, age)
    return best


def static_response(static: StaticResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a configured static fallback."""
    headers: list[tuple[str, str]] = []
    body = b""
    if static.json_body is not None:
        body = json.dumps(static.json_body).encode()
        headers.append(("Content-Type", "application/json"))
    elif static.text is not None:
        body = static.text.encode()
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    headers.extend(static.headers.items())
    return static.status, headers, body


CACHE_OPTIONS = hishel.CacheOptions(shared=_SHARED, supported_methods=sorted(CACHEABLE_METHODS), allow_stale=False)
