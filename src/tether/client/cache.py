"""The cache transport: RFC 9111 HTTP caching and fallback, around the retry transport.

It sits outside :class:`~tether.client.transport.RetryTransport`, so a response served from the cache spends
no attempt, no retry budget and no rate-limit slot, and an open breaker can be answered with a stale response.
``CacheTransport`` and ``AsyncCacheTransport`` are twins that carry out the steps of one
:class:`~tether.client._cache_flow.CacheFlow`, where every decision is; the async one runs store calls in a
worker thread.

Per-request options (``request.extensions``):
    ``tether.cache`` (bool): ``False`` leaves the cache alone for this request (no lookup, nothing kept).
    ``tether.fallback`` (bool): ``False`` lets this request's errors through even if a fallback is configured.

Outcomes (``response.extensions``), on every response of an integration with a cache or fallback:
    ``tether.from_cache`` (bool): served from the cache (fresh, revalidated, or stale).
    ``tether.revalidated`` (bool): a stored response the API confirmed with a 304.
    ``tether.stale`` (bool): a stale response served because the API was down (``X-Tether-Stale: 1`` and
    ``X-Tether-Stale-Age: seconds`` headers too).
    ``tether.fallback`` (``"stale"``, ``"static"`` or ``None``): which fallback answered, if one did; the
    error it stood in for is ``tether.fallback_error``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2

from tether.client._cache_flow import CacheFlow, Close, Send, Steps, not_from_cache
from tether.client._cache_keys import Keyring
from tether.client._cache_rules import CachePolicy
from tether.policies.clock import Clock, SystemClock
from tether.store import CacheStorage

if TYPE_CHECKING:
    from tether.openapi.validate import ResponseValidator

__all__ = ["AsyncCacheTransport", "CachePolicy", "CacheSpec", "CacheStats", "CacheTransport"]


class CacheStats:
    """Counters of one integration's cache and fallbacks, shared by its clients (``hub.stats(name)``)."""

    FIELDS = (
        "cache_hits",
        "cache_revalidated",
        "cache_misses",
        "cache_stored",
        "fallbacks",
        "fallbacks_stale",
        "fallbacks_static",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass
class CacheSpec:
    """Everything about one integration that its cache layer needs; built by :mod:`tether.client.build`.

    Attributes:
        integration: The integration's name.
        policy: Its cache and fallback rules.
        storage: Where responses are kept (``None`` when only static fallbacks are configured).
        keyring: Credential fingerprints for cache keys (with ``storage``).
        stats: The integration's counters.
        clock: Monotonic time, for the elapsed time of cached responses.
        wall: Wall-clock time for HTTP dates. Not the hub's clock: ``Date``, ``Expires`` and freshness are
            wall-clock facts, and hishel's state machine reads the system clock for them.
        validator: ``validate = true``: what ``json()`` of a cached or stale response checks the body with
            (a static fallback is the team's own text, not the API's, and is not checked).
    """

    integration: str
    policy: CachePolicy
    storage: CacheStorage | None = None
    keyring: Keyring | None = None
    stats: CacheStats = field(default_factory=CacheStats)
    clock: Clock = field(default_factory=SystemClock)
    wall: Callable[[], float] = time.time
    validator: ResponseValidator | None = None


class CacheTransport(httpx2.BaseTransport):
    """The sync cache transport: answers from the cache or a fallback, else asks ``inner``."""

    def __init__(self, inner: httpx2.BaseTransport, spec: CacheSpec) -> None:
        self.inner, self.spec = inner, spec

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        flow = CacheFlow(self.spec, request)
        if not flow.active:
            return not_from_cache(self.inner.handle_request(request))
        steps = flow.run()
        reply: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    step = steps.send(reply) if error is None else steps.throw(error)
                except StopIteration as done:
                    return _response(done)
                reply, error = None, None
                try:
                    if isinstance(step, Send):
                        reply = self.inner.handle_request(step.request)
                    elif isinstance(step, Close):
                        step.response.close()
                    else:
                        reply = step.call()
                except Exception as exc:  # handed to the flow, which re-raises what it cannot use
                    error = exc
        finally:
            _close(steps)

    def close(self) -> None:
        # The storage belongs to the hub, which closes it; only the transports below are this client's.
        self.inner.close()


class AsyncCacheTransport(httpx2.AsyncBaseTransport):
    """The async twin of :class:`CacheTransport`; store calls run in a worker thread."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, spec: CacheSpec) -> None:
        self.inner, self.spec = inner, spec

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        flow = CacheFlow(self.spec, request)
        if not flow.active:
            return not_from_cache(await self.inner.handle_async_request(request))
        steps = flow.run()
        reply: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    step = steps.send(reply) if error is None else steps.throw(error)
                except StopIteration as done:
                    return _response(done)
                reply, error = None, None
                try:
                    if isinstance(step, Send):
                        reply = await self.inner.handle_async_request(step.request)
                    elif isinstance(step, Close):
                        await step.response.aclose()
                    else:
                        reply = await asyncio.to_thread(step.call)
                except Exception as exc:  # handed to the flow, which re-raises what it cannot use
                    error = exc
        finally:
            _close(steps)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _response(done: StopIteration) -> httpx2.Response:
    response = done.value
    assert isinstance(response, httpx2.Response)
    return response


def _close(steps: Steps) -> None:
    steps.close()
