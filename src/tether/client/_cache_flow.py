"""One request through the cache and the fallback, written once for both transports.

:meth:`CacheFlow.run` is a generator that yields what it needs done and gets the results back, the way httpx2
``Auth`` flows yield requests: :class:`Send` (through the inner transport; its exception is thrown back in),
:class:`Close` (a response it will not return) and :class:`Storage` (a store call, which the async transport
runs in a worker thread so SQLite never blocks the event loop). Every decision is here or in hishel's RFC 9111
state machine; the transports in :mod:`tether.client.cache` only carry out the steps.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import hishel
import httpx2

from tether import errors
from tether.client._cache_keys import CacheKey, scrub
from tether.client._cache_rules import (
    CACHE_OPTIONS,
    CACHEABLE_METHODS,
    UNSAFE_METHODS,
    age_of,
    freshness_lifetime,
    is_outage,
    stale_candidate,
    static_response,
    storable,
)
from tether.client.response import TetherResponse
from tether.observe.log import logger
from tether.observe.redact import redact_text

if TYPE_CHECKING:
    from tether.client.cache import CacheSpec

__all__ = ["CacheFlow", "Close", "Send", "Storage", "not_from_cache"]

_CONDITIONAL_HEADERS = ("if-none-match", "if-modified-since")


@dataclass(frozen=True, slots=True)
class Send:
    """Send the request through the inner transport; the reply is its response (or its exception)."""

    request: httpx2.Request


@dataclass(frozen=True, slots=True)
class Close:
    """Close a response the flow read but will not return."""

    response: httpx2.Response


@dataclass(frozen=True, slots=True)
class Storage:
    """Call the store. A failure is logged and replied with ``default``: a broken cache is only a slow one."""

    run: Callable[[], Any]
    default: Any = None

    def call(self) -> Any:
        try:
            return self.run()
        except Exception as exc:  # whatever the store raised, the call goes on without it
            _store_failed(exc)
            return self.default


Step: TypeAlias = Send | Close | Storage
Steps: TypeAlias = Generator[Step, Any, httpx2.Response]


class CacheFlow:
    """What the cache layer does with one request.

    Attributes:
        active: Whether the cache layer has anything to do; when not, the transport sends straight on.
    """

    def __init__(self, spec: CacheSpec, request: httpx2.Request) -> None:
        self.spec, self.request = spec, request
        self.started = spec.clock.monotonic()
        policy, method = spec.policy, request.method
        self.path = policy.relative_path(request.url)
        extensions = request.extensions
        has_store = spec.storage is not None and extensions.get("tether.cache", True) is not False
        may_fall_back = extensions.get("tether.fallback", True) is not False
        cacheable = method in CACHEABLE_METHODS
        self.serve = has_store and policy.serve and (cacheable or method in UNSAFE_METHODS)
        self.stale = has_store and may_fall_back and cacheable and bool(policy.stale.lookup(method, self.path))
        self.keep = has_store and cacheable and (policy.serve or self.stale)
        self.ttl = policy.ttl.lookup(method, self.path) if self.keep else None
        self.static = policy.static.lookup(method, self.path) if may_fall_back else None
        self.active = self.serve or self.keep or self.static is not None
        self.entries: list[hishel.Entry] | None = None
        self._stored_request: hishel.Request | None = None
        self._key: CacheKey | None = None

    def run(self) -> Steps:
        """The steps of the request; returns the response to give the caller."""
        if not (self.serve or self.keep):
            answer, served = yield from self._send(None)
            return served or self._passthrough(answer)
        stored_request = self._scrubbed()
        state: hishel.AnyState
        if self.serve:
            self.entries = yield Storage(self._lookup, [])
            state = hishel.IdleClient(options=CACHE_OPTIONS).next(stored_request, self.entries)
        else:  # kept for fallback only: never answer from the cache
            state = hishel.CacheMiss(request=stored_request, options=CACHE_OPTIONS)
        upstream: httpx2.Response | None = None
        while True:
            if isinstance(state, hishel.FromCache):
                if upstream is not None:  # a 304 confirmed the stored response
                    yield Close(upstream)
                return self._from_cache(state.entry, upstream)
            if isinstance(state, hishel.CacheMiss | hishel.NeedRevalidation):
                if upstream is not None:  # a 304 that matched nothing: ask again, unconditionally
                    yield Close(upstream)
                conditional = state.request if isinstance(state, hishel.NeedRevalidation) else None
                upstream, served = yield from self._send(conditional)
                if served is not None:
                    return served
                assert upstream is not None
                seen = self._storable(upstream)
                if seen is None:
                    return self._passthrough(upstream)
                state = state.next(seen)
            elif isinstance(state, hishel.StoreAndUse):
                yield Storage(partial(self._create, stored_request, state.response))
                self._count("cache_stored")
                return self._passthrough(upstream)
            elif isinstance(state, hishel.CouldNotBeStored):
                return self._passthrough(upstream)
            elif isinstance(state, hishel.NeedToBeUpdated):
                updates = [(entry.id, entry.response.headers) for entry in state.updating_entries]
                yield Storage(partial(self._update, updates))
                state = state.next()
            elif isinstance(state, hishel.InvalidateEntries):
                yield Storage(partial(self._remove, list(state.entry_ids)))
                state = state.next()
            else:  # IdleClient: only ever the first state
                raise AssertionError(f"unexpected cache state {type(state).__name__}")

    # --- sending, and falling back when the API is down ------------------------------------------------

    def _send(
        self, conditional: hishel.Request | None
    ) -> Generator[Step, Any, tuple[httpx2.Response | None, httpx2.Response | None]]:
        """Send the request; returns (the API's response, None) or (None, the fallback served instead)."""
        headers = self.request.headers
        wanted = conditional.headers if conditional is not None else {}
        added = []
        for name in _CONDITIONAL_HEADERS:
            value = wanted.get(name)
            if value is not None and name not in headers:
                headers[name] = value
                added.append(name)
        failure: errors.CallError | None = None
        try:
            upstream = yield Send(self.request)
        except errors.CallError as exc:
            if not is_outage(exc):
                raise
            failure = exc
        finally:
            # The conditional headers were for this send only; the caller's request stays as it was.
            for name in added:
                del headers[name]
        if failure is not None:
            served = yield from self._fallback(type(failure).__name__, failure, None)
            if served is None:
                raise failure
            return None, served
        if upstream.status_code >= 500:
            error = upstream.extensions.get("tether.error")
            served = yield from self._fallback(f"HTTP {upstream.status_code}", error, upstream)
            if served is not None:
                yield Close(upstream)
                return None, served
        return upstream, None

    def _fallback(
        self, reason: str, error: Any, upstream: httpx2.Response | None
    ) -> Generator[Step, Any, httpx2.Response | None]:
        """The last good response, else the configured static one, else ``None`` (the error stands)."""
        if self.stale:
            if self.entries is None:
                self.entries = yield Storage(self._lookup, [])
            found = stale_candidate(
                self.entries, self._scrubbed(), max_stale=self.spec.policy.max_stale, now=self.spec.wall()
            )
            if found is not None:
                entry, age = found
                self._fell_back("stale", reason, age)
                extra = [("X-Tether-Fallback", "stale"), ("X-Tether-Stale", "1"), ("X-Tether-Stale-Age", f"{age:.0f}")]
                extensions = {"tether.from_cache": True, "tether.stale": True, "tether.fallback": "stale"}
                return self._respond(entry.response, extra, extensions, upstream, error, age=age)
        if self.static is not None:
            self._fell_back("static", reason, None)
            status, headers, body = static_response(self.static)
            response = hishel.Response(status, hishel.Headers({}), iter((body,)))
            extensions = {"tether.fallback": "static"}
            return self._respond(response, [*headers, ("X-Tether-Fallback", "static")], extensions, upstream, error)
        return None

    def _fell_back(self, kind: str, reason: str, age: float | None) -> None:
        self._count("fallbacks", f"fallbacks_{kind}")
        request = self.request
        fields = {
            "event": "fallback",
            "integration": self.spec.integration,
            "method": request.method,
            "path": redact_text(request.url.raw_path.decode("ascii", "replace")),
            "fallback": kind,
            "reason": reason,
            "age": None if age is None else round(age, 3),
        }
        what = f"a stale response ({age:.0f}s old)" if age is not None else "the static fallback"
        logger.warning(
            f"{fields['integration']} {fields['method']} {fields['path']}: {reason}; served {what} instead",
            extra={"tether": fields},
        )

    # --- responses -------------------------------------------------------------------------------------

    def _from_cache(self, entry: hishel.Entry, revalidation: httpx2.Response | None) -> httpx2.Response:
        self._count("cache_revalidated" if revalidation is not None else "cache_hits")
        extensions = {"tether.from_cache": True, "tether.revalidated": revalidation is not None}
        self._log_cache("revalidated" if revalidation is not None else "hit")
        return self._respond(entry.response, [], extensions, revalidation, None)

    def _respond(
        self,
        stored: hishel.Response,
        extra: list[tuple[str, str]],
        outcome: Mapping[str, Any],
        upstream: httpx2.Response | None,
        error: Any,
        *,
        age: float | None = None,
    ) -> TetherResponse:
        """A response built from a stored (or static) one, with what tether did in its extensions."""
        headers = [
            (name.encode(), value.encode())
            for name in stored.headers
            if not (age is not None and name == "age")
            for value in stored.headers.get_list(name) or []
        ]
        if age is not None:
            headers.append((b"age", f"{age:.0f}".encode()))
        headers.extend((name.encode(), value.encode()) for name, value in extra)
        body = _body(stored.stream)
        extensions = self._extensions(upstream, error)
        extensions.update(outcome)
        if self.spec.validator is not None and outcome.get("tether.fallback") != "static":
            extensions["tether.validator"] = self.spec.validator  # the API's body, kept: checked as when fresh
        return TetherResponse(
            stored.status_code, headers=headers, content=body, request=self.request, extensions=extensions
        )

    def _passthrough(self, upstream: httpx2.Response | None) -> httpx2.Response:
        """The API's own response, marked as not from the cache."""
        assert upstream is not None
        if self.serve and self.request.method in CACHEABLE_METHODS:
            self._count("cache_misses")
        return not_from_cache(upstream)

    def _extensions(self, upstream: httpx2.Response | None, error: Any) -> dict[str, Any]:
        extensions: dict[str, Any] = {
            "tether.integration": self.spec.integration,
            "tether.attempts": (),
            "tether.elapsed": self.spec.clock.monotonic() - self.started,
            "tether.waited": 0.0,
            **_NOT_FROM_CACHE,
        }
        if isinstance(error, errors.CallError):
            extensions["tether.attempts"] = error.attempts
            extensions["tether.fallback_error"] = error
        if upstream is not None:
            for name in ("tether.attempts", "tether.elapsed", "tether.waited"):
                if name in upstream.extensions:
                    extensions[name] = upstream.extensions[name]
            extensions["tether.elapsed"] = self.spec.clock.monotonic() - self.started
        return extensions

    def _storable(self, upstream: httpx2.Response) -> hishel.Response | None:
        """The API's response as hishel sees it, or ``None`` if its body was streamed, so it cannot be kept."""
        try:
            body = upstream.content
        except httpx2.ResponseNotRead:
            if upstream.status_code != 304 and self.request.method in CACHEABLE_METHODS:
                return None
            body = b""
        return storable(upstream.status_code, upstream.headers, body, ttl=self.ttl, now=self.spec.wall())

    # --- the store -------------------------------------------------------------------------------------

    def _scrubbed(self) -> hishel.Request:
        if self._stored_request is None:
            assert self.spec.keyring is not None
            self._stored_request, self._key = scrub(self.request, self.spec.integration, self.spec.keyring)
        return self._stored_request

    def _digest(self) -> str:
        self._scrubbed()
        assert self._key is not None
        return self._key.digest()

    def _storage(self) -> hishel.BaseStorage:
        assert self.spec.storage is not None
        return self.spec.storage

    def _lookup(self) -> list[hishel.Entry]:
        return self._storage().get_entries(self._digest())

    def _create(self, request: hishel.Request, response: hishel.Response) -> None:
        self._storage().create_entry(request, response, self._digest(), tti=self._tti(response))

    def _update(self, updates: list[tuple[uuid.UUID, hishel.Headers]]) -> None:
        for entry_id, headers in updates:
            self._storage().update_headers(entry_id, headers)

    def _remove(self, ids: list[uuid.UUID]) -> None:
        for entry_id in ids:
            self._storage().remove_entry(entry_id)

    def _tti(self, response: hishel.Response) -> float:
        """How long an unused entry is kept: while it may be fresh, then while a fallback may serve it."""
        fresh_for = freshness_lifetime(response) - age_of(response, self.spec.wall())
        return max(fresh_for, 0.0) + self.spec.policy.max_stale

    def _count(self, *names: str) -> None:
        self.spec.stats.add(*names)

    def _log_cache(self, outcome: str) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            request = self.request
            path = redact_text(request.url.raw_path.decode("ascii", "replace"))
            logger.debug(
                f"{self.spec.integration} {request.method} {path}: cache {outcome}",
                extra={"tether": {"event": "cache", "integration": self.spec.integration, "outcome": outcome}},
            )


_NOT_FROM_CACHE: dict[str, Any] = {
    "tether.from_cache": False,
    "tether.revalidated": False,
    "tether.stale": False,
    "tether.fallback": None,
}


_warned = [float("-inf")]
_WARN_EVERY = 60.0


def _store_failed(exc: Exception) -> None:
    # A broken disk fails every call's store step: warn once a minute, not on every request.
    now = time.monotonic()
    level = logging.WARNING if now - _warned[0] >= _WARN_EVERY else logging.DEBUG
    if level == logging.WARNING:
        _warned[0] = now
    logger.log(
        level,
        f"HTTP cache unavailable: {type(exc).__name__}: {redact_text(str(exc))}; serving without it",
        extra={"tether": {"event": "cache_error", "error": type(exc).__name__}},
    )


def not_from_cache(response: httpx2.Response) -> httpx2.Response:
    """Mark the API's own response as such."""
    response.extensions.update(_NOT_FROM_CACHE)
    return response


def _body(stream: Iterator[bytes] | AsyncIterator[bytes] | None) -> bytes:
    if stream is None:
        return b""
    if not isinstance(stream, Iterable):
        raise TypeError("the cache holds buffered bodies only")
    return b"".join(stream)
