"""``tether doctor``'s live checks of one integration, run in order from the network up.

DNS (every address) → TCP (every address) → TLS → proxy environment → the configured ``health`` request, and
from its response: clock skew, status, Content-Type and JSON, latency, API version and deprecation → CORS
preflight. A check whose prerequisite failed is skipped with the reason, so the first ✘ is the cause.

The health request goes through the integration's own client (base URL, auth flow, headers, version,
timeouts, CA bundle, proxy) on a private hub with one attempt, no breaker, no cache or fallback and no call
records: the doctor must see the API's answer itself, not a retried, cached or short-circuited one, and its
calls must not skew the integration's monitoring.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx2

from tether import errors
from tether.client.build import environment_proxy, ssl_context
from tether.config.caching import CacheConfig, FallbackConfig
from tether.config.models import BreakerConfig, RetryConfig
from tether.config.monitoring import MonitoringConfig
from tether.doctor.cors import check_cors
from tether.doctor.network import Resolver, check_dns, check_proxy, check_tcp, check_tls, system_resolver
from tether.doctor.report import Check, Diagnosis, skip
from tether.doctor.request import Probe, check_clock, check_content, check_health, check_latency, check_version
from tether.hub import Hub
from tether.observe.redact import redact_url

__all__ = ["diagnose"]

_AFTER_HEALTH = ("clock", "health", "content", "latency", "version")


def diagnose(hub: Hub, name: str, *, origins: Sequence[str] = (), resolve: Resolver = system_resolver) -> Diagnosis:
    """Run every check of integration ``name``, in order.

    Args:
        hub: The hub whose configuration (and credentials) to use.
        name: The integration.
        origins: Browser origins to send a CORS preflight from (``https://app.example.com``).
        resolve: How host names are resolved (the system resolver by default).

    Raises:
        KeyError: no such integration.
    """
    config = hub.integration(name)
    base_url = str(config.base_url)
    url = httpx2.URL(base_url)
    host, https = url.host, url.scheme == "https"
    port = url.port or (443 if https else 80)
    proxied = environment_proxy(base_url) is not None
    timeout = config.timeout
    rules = config.alerts.over(hub.config.alerts)
    checks: list[Check] = []

    dns = check_dns(host, port, resolve=resolve, proxied=proxied)
    checks.append(dns)
    addresses: list[str] = dns.details.get("addresses", [])
    connected: dict[str, float] = {}
    blocked: str | None = None if dns.status != "fail" else "dns"
    if blocked:
        checks.append(skip("tcp", "skipped: the name does not resolve"))
    else:
        tcp = check_tcp(addresses, port, timeout=timeout.connect, proxied=proxied)
        checks.append(tcp)
        connected = tcp.details["seconds"]
        if not connected and not proxied:
            blocked = "tcp"
    handshake: float | None = None
    if not https:
        checks.append(skip("tls", "plain HTTP: no TLS to check (credentials travel unencrypted)"))
    elif blocked:
        checks.append(skip("tls", f"skipped: the {blocked} check failed"))
    elif proxied and not connected:
        checks.append(skip("tls", "skipped: no direct connection (calls go through the proxy)"))
    else:
        started = time.perf_counter()
        ca_bundle = str(hub.base_dir / config.ca_bundle) if config.ca_bundle else None
        tls = check_tls(host, port, ca_bundle=ca_bundle, timeout=timeout.connect, warn_within=rules.tls_expiry)
        checks.append(tls)
        handshake = time.perf_counter() - started
        if tls.status == "fail":
            blocked = "tls"
    proxy = check_proxy(base_url, timeout=timeout.connect)
    checks.append(proxy)
    if proxy.status == "fail":
        blocked = blocked or "proxy"

    health = config.health
    if health is None:
        reason = 'no health request configured: add health = "GET /v1/…" (a cheap authenticated call)'
        checks.extend(skip(check, reason) for check in _AFTER_HEALTH)
    elif blocked:
        checks.extend(skip(check, f"skipped: the {blocked} check failed") for check in _AFTER_HEALTH)
    else:
        probe = _probe(hub, name, health.method, health.path)
        connect = max(connected.values(), default=None) if not proxied else None
        checks += [
            check_clock(probe),
            check_health(probe, config),
            check_content(probe),
            check_latency(probe, rules.latency_p95, connect=connect, handshake=handshake),
            check_version(probe, config),
        ]
    method, path = (health.method, health.path) if health else ("GET", "/")
    checks.append(_cors(hub, name, list(origins), method, path, blocked))
    return Diagnosis(integration=name, url=redact_url(base_url), checks=tuple(checks))


def _quiet_hub(hub: Hub, name: str) -> Hub:
    """A hub for ``name`` alone that sends each call once and records nothing (see the module docstring)."""
    integration = hub.integration(name).model_copy(
        update={
            "retry": RetryConfig(attempts=1),
            "breaker": BreakerConfig(enabled=False),
            "cache": CacheConfig(enabled=False),
            "fallback": FallbackConfig(),
            "rate_limit": None,
            "tokens_per_minute": None,
            "concurrency": None,
            "endpoints": {},
        }
    )
    config = hub.config.model_copy(
        update={
            "state": "memory",
            "monitoring": MonitoringConfig(record=False, otel=False),
            "integrations": {name: integration},
        }
    )
    return Hub(config, base_dir=hub.base_dir)


def _probe(hub: Hub, name: str, method: str, path: str) -> Probe:
    response: httpx2.Response | None = None
    error: Exception | None = None
    with _quiet_hub(hub, name) as quiet, quiet.client(name) as client:
        started = time.perf_counter()
        try:
            response = client.request(method, path)
        except (errors.TetherError, httpx2.HTTPError) as exc:
            error = exc
        elapsed = time.perf_counter() - started
    return Probe(method, path, response, error, elapsed, time.time())


def _cors(hub: Hub, name: str, origins: list[str], method: str, path: str, blocked: str | None) -> Check:
    if not origins:
        return skip("cors", "no browser origins configured (tether doctor --origin https://app.example.com)")
    if blocked:
        return skip("cors", f"skipped: the {blocked} check failed")
    config = hub.integration(name)
    client = httpx2.Client(
        base_url=str(config.base_url),
        verify=ssl_context(config, hub.base_dir),
        proxy=environment_proxy(str(config.base_url)),
        timeout=httpx2.Timeout(config.timeout.total, connect=config.timeout.connect),
    )
    with client:
        return check_cors(client, path, method, origins, config)
