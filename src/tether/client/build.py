"""Where the client stack is assembled, in one place and one order.

A request through ``hub.client(name)`` passes, outermost first:

1. ``httpx2.Client``: base URL, default headers (User-Agent, the API version header), cookies, redirects.
2. The ``Auth`` flow (``tether.auth``): outside the transports so that a flow that renews credentials on a
   401 can replay the request once, and so every retry below carries the same, current credentials.
3. :class:`~tether.client.cache.CacheTransport` (only when the integration has ``cache`` or ``fallback``):
   outside the retry transport, so a response served from the cache spends no attempt, no retry budget and
   no rate-limit slot, and never waits behind a breaker; and so that a fallback stands in for the final
   error the retry transport gives up with (an open breaker included), never for one attempt that a retry
   would have fixed. Inside the auth flow, so it sees the credentials it must vary the cache key by (the
   store keeps only a fingerprint of them).
4. :class:`~tether.client.transport.RetryTransport`: the call's deadline, per-attempt timeouts, retries with
   backoff, the idempotency key, logs, typed errors. The rate limit and the breaker sit inside it so each
   attempt is admitted separately.
5. The network transport: ``httpx2.HTTPTransport`` (sync) or :class:`AiohttpTransport` (async), because
   httpx2's own async socket layer falls far behind aiohttp under concurrency (docs/benchmarks.md).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from tether import __version__
from tether.auth.static import credential_source
from tether.client._cache_keys import Keyring
from tether.client.cache import CachePolicy, CacheSpec, CacheStats
from tether.client.call import Route
from tether.client.transport import CallSpec
from tether.config.models import BreakerConfig, IntegrationConfig, RateLimitConfig
from tether.observe.recorder import Recorder
from tether.policies.breaker import BreakerSettings
from tether.policies.budget import RetryBudget
from tether.policies.bulkhead import Bulkhead
from tether.policies.clock import Clock
from tether.policies.endpoints import EndpointRules
from tether.policies.ratelimit import Rate
from tether.policies.retry import RetryPolicy
from tether.state.base import Group, Limits, StateBackend
from tether.store import CacheStorage

if TYPE_CHECKING:
    from tether.openapi.validate import ResponseValidator

__all__ = [
    "USER_AGENT",
    "cache_spec_for",
    "client_options",
    "environment_proxy",
    "limits_for",
    "network_transport",
    "routes_for",
    "spec_for",
]

USER_AGENT = f"tether/{__version__}"
LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=50, keepalive_expiry=30.0)


def limits_for(config: IntegrationConfig) -> Limits:
    """The rate limit, token budget and breaker settings of an integration, as the state backend takes them."""
    return Limits(_rate(config.rate_limit), _breaker(config.breaker), _tokens(config.tokens_per_minute))


def routes_for(config: IntegrationConfig) -> EndpointRules[Route]:
    """The limits of each endpoint group (``endpoints``): the integration's, with the group's inside."""
    outer = limits_for(config)
    rules = []
    for pattern, endpoint in config.endpoints.items():
        group = Group(
            pattern, _rate(endpoint.rate_limit), _breaker(endpoint.breaker), _tokens(endpoint.tokens_per_minute)
        )
        limits = replace(outer, group=group)
        if endpoint.breaker is not None and not endpoint.breaker.enabled:
            limits = replace(limits, breaker=None)  # breaker = false: no breaker for these endpoints at all
        max_wait = endpoint.rate_limit.max_wait if endpoint.rate_limit is not None else None
        rules.append((pattern, Route(limits, max_wait)))
    return EndpointRules(rules)


def _rate(config: RateLimitConfig | None) -> Rate | None:
    return None if config is None else Rate(config.requests, config.per, config.burst)


def _tokens(per_minute: int | None) -> Rate | None:
    # The whole minute's budget may be spent at once, as the APIs that count tokens allow.
    return None if per_minute is None else Rate(per_minute, 60.0, burst=per_minute)


def _breaker(config: BreakerConfig | None) -> BreakerSettings | None:
    if config is None or not config.enabled:
        return None
    return BreakerSettings(
        config.failure_ratio, config.window, config.min_calls, config.open_for, config.probes, config.slow_call
    )


def spec_for(
    name: str,
    config: IntegrationConfig,
    *,
    budget: RetryBudget,
    clock: Clock,
    raise_for_status: bool,
    state: StateBackend,
    bulkhead: Bulkhead | None = None,
    recorder: Recorder | None = None,
    base_dir: Path | None = None,
) -> CallSpec:
    """The call spec (policies and limits) of integration ``name``; ``base_dir`` is the config's folder, which
    ``openapi`` is relative to."""
    timeout = config.timeout
    base_path = (config.base_url.path or "").rstrip("/")
    return CallSpec(
        integration=name,
        policy=RetryPolicy.from_config(config.retry),
        deadline=timeout.total,
        limits={
            "connect": timeout.connect,
            "read": timeout.read,
            "write": timeout.write,
            "pool": timeout.pool,
        },
        budget=budget if config.retry.budget < 1.0 else None,
        idempotency_header=config.idempotency_header,
        raise_for_status=raise_for_status,
        credential_source=credential_source(config.auth),
        clock=clock,
        state=state,
        rate_limits=limits_for(config),
        routes=routes_for(config),
        base_path=base_path,
        max_wait=config.rate_limit.max_wait if config.rate_limit else None,
        bulkhead=bulkhead,
        recorder=recorder,
        version=config.version,
        version_header=config.version_header,
        validator=_validator(config, base_dir or Path.cwd(), base_path),
    )


def _validator(config: IntegrationConfig, base_dir: Path, base_path: str) -> ResponseValidator | None:
    if not config.validate_responses or config.openapi is None:
        return None
    # Imported here: jsonschema and PyYAML cost import time that integrations without validate never pay.
    from tether.openapi.validate import response_validator

    return response_validator(base_dir / config.openapi, base_path)


def cache_spec_for(
    name: str,
    config: IntegrationConfig,
    *,
    backend: Callable[[], tuple[CacheStorage, Keyring]],
    stats: CacheStats,
    clock: Clock,
    base_dir: Path | None = None,
) -> CacheSpec | None:
    """The cache spec of integration ``name``, or ``None`` when it has neither ``cache`` nor ``fallback``.

    ``backend`` opens the store; it is called only when the policy keeps responses (a cache, or a stale
    fallback), so integrations without them never create the store's file.
    """
    policy = CachePolicy.from_config(config)
    if policy is None:
        return None
    storage, keyring = backend() if policy.stores else (None, None)
    base_path = (config.base_url.path or "").rstrip("/")
    validator = _validator(config, base_dir or Path.cwd(), base_path)
    return CacheSpec(name, policy, storage, keyring, stats, clock, validator=validator)


def ssl_context(config: IntegrationConfig, base_dir: Path) -> ssl.SSLContext:
    """The TLS context: the system's trust store (honouring ``SSL_CERT_FILE``) plus ``ca_bundle``."""
    context = httpx2.create_ssl_context(verify=True, trust_env=True)
    if config.ca_bundle:
        context.load_verify_locations(cafile=str(base_dir / config.ca_bundle))
    return context


_LOOPBACK = frozenset({"localhost", "::1", "[::1]"})


def environment_proxy(base_url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) sets for a URL.

    httpx2 mounts environment proxies only when it builds its own transport; tether always gives it one, so
    it reads them here and hands the proxy to the network transport, under the policy stack. Loopback
    addresses are never proxied.
    """
    url = httpx2.URL(base_url)
    if url.host in _LOOPBACK or url.host.startswith("127.") or urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    return proxy or None


def network_transport(config: IntegrationConfig, base_dir: Path, *, asynchronous: bool) -> Any:
    """The innermost transport: the one that talks to the network."""
    context = ssl_context(config, base_dir)
    proxy = environment_proxy(str(config.base_url))
    if asynchronous:
        # Imported here: aiohttp costs ~100 ms to import and sync-only programs never need it.
        from tether.client.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(verify=context, limits=LIMITS, proxy=proxy)
    return httpx2.HTTPTransport(verify=context, limits=LIMITS, proxy=proxy)


def client_options(config: IntegrationConfig) -> dict[str, Any]:
    """Keyword arguments for ``httpx2.Client``/``AsyncClient`` (all but the transport and the auth flow, which
    the hub keeps one of per integration)."""
    headers = {"User-Agent": USER_AGENT, **config.headers}
    if config.version is not None and config.version_header is not None:
        headers[config.version_header] = config.version
    timeout = config.timeout
    return {
        "base_url": str(config.base_url),
        "headers": headers,
        # The retry transport sets each attempt's limits itself; these apply when the transport is used alone.
        "timeout": httpx2.Timeout(
            timeout.read or timeout.total, connect=timeout.connect, write=timeout.write, pool=timeout.pool
        ),
    }
