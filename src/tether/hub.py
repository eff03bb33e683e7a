"""The Hub: ``tether.toml`` loaded into ready clients and transports, one per integration."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from tether.auth import auth_for
from tether.auth.oauth2 import OAuth2Auth, TokenManager
from tether.client._cache_keys import Keyring
from tether.client.build import cache_spec_for, client_options, network_transport, spec_for
from tether.client.cache import AsyncCacheTransport, CacheSpec, CacheStats, CacheTransport
from tether.client.clients import TetherAsyncClient, TetherClient
from tether.client.transport import AsyncRetryTransport, RetryTransport
from tether.config.loader import find_config, load_config
from tether.config.models import IntegrationConfig, TetherConfig
from tether.observe.calllog import CallLog
from tether.observe.otel import configured as otel_configured
from tether.observe.otel import instrument as instrument_otel
from tether.observe.recorder import Recorder
from tether.observe.redact import install_log_filters
from tether.policies.budget import RetryBudget
from tether.policies.bulkhead import Bulkhead
from tether.policies.clock import Clock, SystemClock
from tether.state.base import StateBackend
from tether.state.memory import MemoryState
from tether.store import CacheStorage, Store, open_cache_storage, open_store

if TYPE_CHECKING:
    from tether.config.webhooks import WebhookConfig
    from tether.webhooks.events import Handler, Handlers
    from tether.webhooks.inbox import Inbox

__all__ = ["Hub"]


class Hub:
    """Every integration of one ``tether.toml``, with the state their calls share.

    Clients are cheap to make but should be reused: each one owns a connection pool. Policy state (retry
    budgets, rate limits, breakers) and the cache belong to the hub, so every client of an integration, sync
    or async, shares them. Close the hub (or use it as a context manager) when done: it owns the store.

    Args:
        config: The validated configuration.
        base_dir: Folder that relative paths in the config (``ca_bundle``) are resolved against.
        clock: Time source for every policy; tests pass a :class:`~tether.policies.ManualClock`.
        sleep: How sync transports wait between attempts; tests pass one that advances their clock.
        async_sleep: The async counterpart of ``sleep``.
        state: Where rate-limit budgets, pauses and breakers live; by default what ``state`` in the config
            says (``memory``, or Redis shared by every process).
        store: Where the HTTP cache keeps responses; by default what ``store`` in the config says, opened on
            first use (a store passed here is the caller's to close). When the config sets ``cache_store``, the
            cache lives there instead, opened on first use and closed with the hub.
    """

    def __init__(
        self,
        config: TetherConfig,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        state: StateBackend | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.clock = clock or SystemClock()
        self._sleep, self._async_sleep = sleep, async_sleep
        self.state = state if state is not None else _state_for(config, self.clock)
        self._owns_state = state is None
        self._budgets = {
            name: RetryBudget(ratio=integration.retry.budget, clock=self.clock)
            for name, integration in config.integrations.items()
        }
        self._bulkheads = {
            name: Bulkhead(integration.concurrency)
            for name, integration in config.integrations.items()
            if integration.concurrency is not None
        }
        self._stats = {name: CacheStats() for name in config.integrations}
        self._auth: dict[str, httpx2.Auth | None] = {}
        self._auth_lock = threading.Lock()
        self._store, self._owns_store = store, store is None
        self._cache: tuple[CacheStorage, Callable[[], None]] | None = None  # from cache_store, with its closer
        self._keyring: Keyring | None = None
        self._store_lock = threading.Lock()
        self._inbox: Inbox | None = None
        self._handlers: Handlers | None = None
        self._call_log: CallLog | None = None
        monitoring = config.monitoring
        self.recorder: Recorder | None = None
        otel = monitoring.otel is True or (monitoring.otel == "auto" and otel_configured())
        if monitoring.record or otel:
            self.recorder = Recorder(
                (lambda: self.call_log) if monitoring.record else None,
                flush_interval=monitoring.flush_interval,
                buffer=monitoring.buffer,
                retention=monitoring.retention,
                summary_retention=monitoring.summary_retention,
                wall=self.clock.wall,
            )
            if otel:
                instrument_otel(self.recorder)
        install_log_filters()

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Hub:
        """Load ``tether.toml`` (``path``, else ``$TETHER_CONFIG``, else ``./tether.toml``).

        Raises:
            tether.errors.ConfigError: the file is missing or invalid; the message names each key path.
        """
        file = find_config(path)
        return cls(load_config(file), base_dir=file.resolve().parent, **kwargs)

    @property
    def store(self) -> Store:
        """The store (``store`` in the config), opened on first use."""
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.config.store, self.base_dir)
            return self._store

    def stats(self, name: str) -> dict[str, int]:
        """Counters of ``name``'s cache and fallbacks: ``cache_hits``, ``cache_misses``, ``fallbacks``…"""
        self.integration(name)
        return self._stats[name].snapshot()

    @property
    def call_log(self) -> CallLog:
        """The call records and their summaries, in the store."""
        store = self.store
        with self._store_lock:
            if self._call_log is None:
                self._call_log = CallLog(store)
            return self._call_log

    def close(self) -> None:
        """Write the last call records, then close the store and the state backend this hub opened.

        Clients still open then see cache misses, and their calls are no longer recorded.
        """
        if self.recorder is not None:
            self.recorder.close()
        with self._store_lock:
            if self._cache is not None:
                self._cache[1]()
                self._cache, self._keyring = None, None
            if self._store is not None and self._owns_store:
                self._store.close()
                self._store, self._keyring, self._call_log = None, None, None
        close_state = getattr(self.state, "close", None)
        if self._owns_state and callable(close_state):
            close_state()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def integrations(self) -> Mapping[str, IntegrationConfig]:
        """The configured integrations by name."""
        return self.config.integrations

    def integration(self, name: str) -> IntegrationConfig:
        """The config of integration ``name``.

        Raises:
            KeyError: no such integration; the message lists the configured ones.
        """
        try:
            return self.config.integrations[name]
        except KeyError:
            known = ", ".join(sorted(self.config.integrations)) or "none"
            raise KeyError(f"no integration named {name!r} in tether.toml (configured: {known})") from None

    def transport(
        self, name: str, *, raise_for_status: bool = False, network: httpx2.BaseTransport | None = None
    ) -> RetryTransport | CacheTransport:
        """The sync policy transport of ``name``, for an SDK that takes a transport.

        With ``cache`` or ``fallback`` configured it is a :class:`~tether.client.cache.CacheTransport` around
        the :class:`~tether.client.transport.RetryTransport`; otherwise the retry transport itself.

        Args:
            name: The integration.
            raise_for_status: Raise typed errors for 4xx/5xx from the transport itself.
            network: The transport that talks to the network (default ``httpx2.HTTPTransport``); tests
                pass an ``httpx2.MockTransport`` here.
        """
        config = self.integration(name)
        inner = network or network_transport(config, self.base_dir, asynchronous=False)
        retry = RetryTransport(inner, self._spec(name, raise_for_status), sleep=self._sleep)
        cache = self._cache_spec(name)
        return retry if cache is None else CacheTransport(retry, cache)

    def async_transport(
        self, name: str, *, raise_for_status: bool = False, network: httpx2.AsyncBaseTransport | None = None
    ) -> AsyncRetryTransport | AsyncCacheTransport:
        """The async policy transport of ``name``; see :meth:`transport`."""
        config = self.integration(name)
        inner = network or network_transport(config, self.base_dir, asynchronous=True)
        retry = AsyncRetryTransport(inner, self._spec(name, raise_for_status), sleep=self._async_sleep)
        cache = self._cache_spec(name)
        return retry if cache is None else AsyncCacheTransport(retry, cache)

    def client(
        self,
        name: str,
        *,
        raise_for_status: bool = False,
        network: httpx2.BaseTransport | None = None,
        **kwargs: Any,
    ) -> httpx2.Client:
        """An ``httpx2.Client`` for ``name`` with base URL, auth, headers, timeouts and the policy stack.

        Responses are :class:`~tether.client.TetherResponse`: ``raise_for_status()`` raises tether's typed
        error with its hint, and ``json()`` raises typed format errors. Pass ``raise_for_status=True`` to
        have every 4xx/5xx raise without asking. Other keyword arguments go to ``httpx2.Client``.
        """
        transport = self.transport(name, raise_for_status=raise_for_status, network=network)
        options = {**client_options(self.integration(name)), "auth": self.auth(name), **kwargs}
        return TetherClient(transport=transport, **options)

    def async_client(
        self,
        name: str,
        *,
        raise_for_status: bool = False,
        network: httpx2.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> httpx2.AsyncClient:
        """An ``httpx2.AsyncClient`` for ``name``; see :meth:`client`."""
        transport = self.async_transport(name, raise_for_status=raise_for_status, network=network)
        options = {**client_options(self.integration(name)), "auth": self.auth(name), **kwargs}
        return TetherAsyncClient(transport=transport, **options)

    def auth(self, name: str) -> httpx2.Auth | None:
        """The ``Auth`` flow of ``name`` (``None`` without ``auth``), one per hub so renewals are shared.

        OAuth 2.0 tokens live in the store; see :mod:`tether.auth.oauth2` for how renewal stays single-flight.
        """
        with self._auth_lock:
            if name not in self._auth:
                self._auth[name] = auth_for(
                    name,
                    self.integration(name),
                    base_dir=self.base_dir,
                    store=lambda: self.store,
                    wall=self.clock.wall,
                    sleep=self._sleep,
                    async_sleep=self._async_sleep,
                )
            return self._auth[name]

    # -- webhooks ----------------------------------------------------------------------------------------------

    def on(self, name: str, event_type: str = "*") -> Callable[[Handler], Handler]:
        """Register the decorated function as a handler of ``name``'s webhook events of ``event_type``.

        ``event_type`` is a type (``"invoice.paid"``), a glob (``"invoice.*"``) or ``"*"`` (every event, also
        those without a type). A handler takes a :class:`~tether.webhooks.WebhookEvent`, may be sync or async,
        and must be idempotent: delivery is at least once. Raising fails the attempt (it is retried).

        Raises:
            KeyError: ``name`` is not an integration.
            ValueError: it has no ``webhooks`` table.
        """
        if self.integration(name).webhooks is None:
            raise ValueError(
                f"integration {name!r} has no [integrations.{name}.webhooks] table; add one (scheme and secret) "
                "to receive its webhooks"
            )

        def register(handler: Handler) -> Handler:
            self.webhook_handlers.add(name, event_type, handler)
            return handler

        return register

    def webhook_configs(self) -> dict[str, WebhookConfig]:
        """The ``webhooks`` table of every integration that has one."""
        return {name: config.webhooks for name, config in self.integrations.items() if config.webhooks is not None}

    @property
    def webhook_handlers(self) -> Handlers:
        """What :meth:`on` registered."""
        from tether.webhooks.events import Handlers

        with self._store_lock:
            if self._handlers is None:
                self._handlers = Handlers()
            return self._handlers

    @property
    def inbox(self) -> Inbox:
        """The webhook inbox, in the store."""
        from tether.webhooks.inbox import Inbox

        store = self.store
        with self._store_lock:
            if self._inbox is None:
                self._inbox = Inbox(store, wall=self.clock.wall)
            return self._inbox

    def token_manager(self, name: str) -> TokenManager:
        """The OAuth 2.0 token manager of ``name`` (``tether auth``).

        Raises:
            ValueError: ``name`` does not use OAuth 2.0.
        """
        auth = self.auth(name)
        if not isinstance(auth, OAuth2Auth):
            raise ValueError(f'integration {name!r} does not use OAuth 2.0 (auth.type = "oauth2")')
        return auth.manager

    def _spec(self, name: str, raise_for_status: bool) -> Any:
        return spec_for(
            name,
            self.integration(name),
            budget=self._budgets[name],
            clock=self.clock,
            raise_for_status=raise_for_status,
            state=self.state,
            bulkhead=self._bulkheads.get(name),
            recorder=self.recorder,
            base_dir=self.base_dir,
        )

    def _cache_spec(self, name: str) -> CacheSpec | None:
        return cache_spec_for(
            name,
            self.integration(name),
            backend=self._cache_backend,
            stats=self._stats[name],
            clock=self.clock,
            base_dir=self.base_dir,
        )

    def _cache_backend(self) -> tuple[CacheStorage, Keyring]:
        storage = self._cache_storage()
        with self._store_lock:
            if self._keyring is None:
                self._keyring = Keyring(storage.salt)
            return storage, self._keyring

    def _cache_storage(self) -> CacheStorage:
        if self.config.cache_store is None:
            return self.store.cache_storage()
        with self._store_lock:
            if self._cache is None:
                self._cache = open_cache_storage(self.config.cache_store, self.base_dir)
            return self._cache[0]

    def __repr__(self) -> str:
        return f"Hub(integrations={sorted(self.config.integrations)!r})"


def _state_for(config: TetherConfig, clock: Clock) -> StateBackend:
    if config.state == "memory":
        return MemoryState(clock=clock)
    from tether.state.redis import RedisState

    return RedisState(config.state, fallback=MemoryState(clock=clock))
