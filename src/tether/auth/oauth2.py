"""OAuth 2.0 credentials that renew themselves, once, everywhere.

:class:`OAuth2Auth` is an httpx2 ``Auth`` flow: it sends the current access token, and on a 401 drops it,
renews once and replays the request once (never a loop). :class:`TokenManager` decides when to renew and makes
sure one renewal happens however many callers need it at the same moment:

- threads of a process take turns on one lock, and the first re-checks before it renews;
- asyncio tasks of an event loop take turns on one ``asyncio.Lock`` (the event loop never blocks: the store
  is used from a worker thread and the token request is async);
- processes (and machines sharing a PostgreSQL store) take turns on a lease in the store, re-read the token
  set once they hold it, and renew only if it still needs renewing.

That matters: a server with refresh-token rotation and reuse detection revokes the whole grant when two refreshes
race. A token endpoint that fails transiently never costs the refresh token (it is kept until the endpoint says
``invalid_grant``), and while the access token has not expired yet calls keep using it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx2

from tether.auth.token_endpoint import TokenEndpoint
from tether.auth.tokens import TokenSet, TokenStore
from tether.errors import AuthError, GrantRevokedError, TokenEndpointError
from tether.observe.log import logger

# tether.client.call.AUTH_REPLAYS_401, not imported: auth stays below the client layer.
_REPLAYS_401 = "tether.auth_replays_401"

__all__ = ["OAuth2Auth", "TokenManager"]

_LEASE_TTL = 30.0


class TokenManager:
    """The tokens of one integration, shared by every client of a hub.

    Args:
        integration: The integration's name (the store's key).
        endpoint: Its token endpoint.
        store: Where token sets and renewal leases live.
        renew_before: Seconds before expiry to renew (default: :func:`~tether.auth.tokens.renew_margin`).
        wall: Wall-clock time.
        async_sleep: How the async path waits for another process's lease.
    """

    def __init__(
        self,
        integration: str,
        endpoint: TokenEndpoint,
        store: TokenStore,
        *,
        renew_before: float | None = None,
        wall: Callable[[], float] = time.time,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.integration, self.endpoint, self.store = integration, endpoint, store
        self.renew_before = renew_before
        self._wall, self._async_sleep = wall, async_sleep
        self._cached: TokenSet | None = None
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.renewals = 0  # token requests this process made (tests and ``tether auth status``)

    def _good(self, tokens: TokenSet | None, rejected: str | None) -> bool:
        return (
            tokens is not None
            and tokens.access_token != rejected
            and tokens.usable(self._wall(), margin=self.renew_before)
        )

    # -- sync --------------------------------------------------------------------------------------------------

    def token(self, *, rejected: str | None = None) -> TokenSet:
        """A token set to send now; renews first when needed. ``rejected``: the access token the API refused."""
        cached = self._cached
        if self._good(cached, rejected):
            assert cached is not None
            return cached
        with self._lock:
            cached = self._cached
            if self._good(cached, rejected):
                assert cached is not None
                return cached
            stored = self._load()
            if self._good(stored, rejected):
                self._cached = stored
                assert stored is not None
                return stored
            with self.store.lease(self._lease_name(), ttl=_LEASE_TTL, timeout=_LEASE_TTL) as held:
                if not held:
                    raise self._lease_timeout()
                stored = self._load()  # another process may have renewed while this one waited
                if self._good(stored, rejected):
                    self._cached = stored
                    assert stored is not None
                    return stored
                renewed = self._renew_sync(stored, rejected)
            self._cached = renewed
            return renewed

    def _renew_sync(self, stored: TokenSet | None, rejected: str | None) -> TokenSet:
        try:
            form = self.endpoint.form(stored)
            self.renewals += 1
            renewed = self.endpoint.request(form, current=stored)
        except GrantRevokedError:
            self._revoked(stored)
            raise
        except TokenEndpointError as exc:
            return self._keep(stored, rejected, exc)
        self.store.save(self.integration, renewed)
        _log_renewed(self.integration, renewed)
        return renewed

    # -- async -------------------------------------------------------------------------------------------------

    async def atoken(self, *, rejected: str | None = None) -> TokenSet:
        """:meth:`token` without blocking the event loop."""
        cached = self._cached
        if self._good(cached, rejected):
            assert cached is not None
            return cached
        async with self._async_lock():
            cached = self._cached
            if self._good(cached, rejected):
                assert cached is not None
                return cached
            stored = await asyncio.to_thread(self._load)
            if self._good(stored, rejected):
                self._cached = stored
                assert stored is not None
                return stored
            holder, name = uuid.uuid4().hex, self._lease_name()
            if not await self._atake(name, holder):
                raise self._lease_timeout()
            try:
                stored = await asyncio.to_thread(self._load)
                if self._good(stored, rejected):
                    renewed = stored
                else:
                    renewed = await self._renew_async(stored, rejected)
            finally:
                await asyncio.to_thread(self.store.release, name, holder)
            assert renewed is not None
            self._cached = renewed
            return renewed

    async def _renew_async(self, stored: TokenSet | None, rejected: str | None) -> TokenSet:
        try:
            form = self.endpoint.form(stored)
            self.renewals += 1
            renewed = await self.endpoint.arequest(form, current=stored)
        except GrantRevokedError:
            await asyncio.to_thread(self._revoked, stored)
            raise
        except TokenEndpointError as exc:
            return self._keep(stored, rejected, exc)
        await asyncio.to_thread(self.store.save, self.integration, renewed)
        _log_renewed(self.integration, renewed)
        return renewed

    async def _atake(self, name: str, holder: str) -> bool:
        deadline = self._wall() + _LEASE_TTL
        delay = 0.01
        while not await asyncio.to_thread(self.store.try_lease, name, holder, ttl=_LEASE_TTL):
            if self._wall() >= deadline:
                return False
            await self._async_sleep(delay)
            delay = min(delay * 2, 0.2)
        return True

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            lock = self._async_locks.setdefault(loop, asyncio.Lock())
        return lock

    # -- shared ------------------------------------------------------------------------------------------------

    def store_tokens(self, tokens: TokenSet) -> None:
        """Keep a token set obtained elsewhere (``tether auth login``)."""
        self.store.save(self.integration, tokens)
        self._cached = tokens

    def forget(self) -> None:
        """Delete the stored token set (``tether auth reset``): the next call obtains one afresh, or needs a login."""
        self.store.delete(self.integration)
        self._cached = None

    def stored(self) -> TokenSet | None:
        """The stored token set, as it is (``tether auth status``)."""
        return self._load()

    def _load(self) -> TokenSet | None:
        try:
            return self.store.load(self.integration)
        except ValueError as exc:  # cannot decrypt: say so rather than renewing over the user's tokens
            raise AuthError(
                self.integration,
                f"the stored OAuth tokens cannot be read: {exc}",
                hint="set the TETHER_SECRET_KEY they were stored with, or `tether auth reset` and log in again",
            ) from None

    def _keep(self, stored: TokenSet | None, rejected: str | None, exc: TokenEndpointError) -> TokenSet:
        """Renewal failed transiently: keep sending the current token while it is valid and not refused."""
        if stored is not None and stored.access_token != rejected and stored.valid(self._wall()):
            logger.warning(
                "%s: renewing the OAuth token failed (%s); using the current one until it expires",
                self.integration,
                exc.summary,
                extra={"tether": {"event": "auth", "integration": self.integration, "state": "renew_failed"}},
            )
            return stored
        raise exc

    def _revoked(self, stored: TokenSet | None) -> None:
        if stored is not None:
            self.store.save(self.integration, TokenSet(access_token="", obtained_at=stored.obtained_at, revoked=True))
        self._cached = None
        logger.error(
            "%s: the OAuth grant was revoked; calls fail until someone logs in again",
            self.integration,
            extra={"tether": {"event": "auth", "integration": self.integration, "state": "grant_revoked"}},
        )

    def _lease_name(self) -> str:
        return f"token:{self.integration}"

    def _lease_timeout(self) -> TokenEndpointError:
        return TokenEndpointError(
            self.integration,
            f"another process held the token renewal lease for over {_LEASE_TTL:g}s",
            hint="a process renewing the token is stuck; it loses the lease after 30 s, retry then",
        )


def _log_renewed(integration: str, tokens: TokenSet) -> None:
    if logger.isEnabledFor(logging.INFO):
        lifetime = f" for {tokens.lifetime:.0f}s" if tokens.lifetime is not None else ""
        logger.info(
            "%s: OAuth token renewed%s",
            integration,
            lifetime,
            extra={"tether": {"event": "auth", "integration": integration, "state": "renewed"}},
        )


class OAuth2Auth(httpx2.Auth):
    """Send the integration's OAuth 2.0 access token; on a 401, renew once and replay once."""

    def __init__(self, manager: TokenManager) -> None:
        self.manager = manager

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        tokens = self.manager.token()
        _authorize(request, tokens)
        replayable = _mark_replayable(request)
        response = yield request
        if response.status_code == 401 and replayable:
            response.close()
            _authorize(request, self.manager.token(rejected=tokens.access_token))
            request.extensions.pop(_REPLAYS_401, None)
            yield request

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        tokens = await self.manager.atoken()
        _authorize(request, tokens)
        replayable = _mark_replayable(request)
        response = yield request
        if response.status_code == 401 and replayable:
            await response.aclose()
            _authorize(request, await self.manager.atoken(rejected=tokens.access_token))
            request.extensions.pop(_REPLAYS_401, None)
            yield request

    def __repr__(self) -> str:
        return f"OAuth2Auth({self.manager.integration!r}, grant={self.manager.endpoint.config.grant!r})"


def _authorize(request: httpx2.Request, tokens: TokenSet) -> None:
    request.headers["Authorization"] = f"{tokens.token_type} {tokens.access_token}"


def _mark_replayable(request: httpx2.Request) -> bool:
    """Whether ``request`` can be sent twice; if so, mark it so a client that raises for errors lets the
    first 401 come back to the flow (see ``tether.client.call.AUTH_REPLAYS_401``)."""
    try:
        request.content  # noqa: B018 - raises when the body is an unread stream, which cannot be sent twice
    except httpx2.RequestNotRead:
        return False
    # The mark is read from the request the transport sees, so the replay, sent without it, raises as usual.
    request.extensions[_REPLAYS_401] = True
    return True
