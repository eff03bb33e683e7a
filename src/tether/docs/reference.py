"""The reference part of an integration's page: what ``tether.toml`` says about it, in words.

Each function returns one section's Markdown lines. Values a reader may want to look up in the file are
written the way the file writes them (durations as ``"1m30s"``, patterns verbatim).
"""

from __future__ import annotations

from tether.config.models import (
    BreakerConfig,
    IntegrationConfig,
    RateLimitConfig,
    RetryConfig,
    TetherConfig,
    TimeoutConfig,
)
from tether.docs._text import code, duration, item, plural, text, url
from tether.observe.redact import is_sensitive_name

__all__ = [
    "alert_lines",
    "breaker_text",
    "browser_lines",
    "limit_lines",
    "notes_lines",
    "overview_lines",
    "rate_text",
    "retry_text",
    "timeout_text",
]

_PER = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}


def overview_lines(name: str, config: IntegrationConfig) -> list[str]:
    """Purpose, owner, where the API is and which version of it: the first lines of an integration's page."""
    lines = [
        text(config.purpose)
        if config.purpose
        else f"_No purpose written yet: add `purpose` to `[integrations.{name}]`._"
    ]
    lines.append("")
    lines.append(item("Owner", text(config.owner) if config.owner else "not set (`owner`)"))
    lines.append(item("Base URL", url(config.base_url)))
    if config.version is not None:
        version = f"{code(config.version)}, sent in header {code(config.version_header)}"
    else:
        version = "not pinned: the API's default version applies (`version` and `version_header`)"
    lines.append(item("API version", version))
    lines.append(item("Provider docs", url(config.docs_url) if config.docs_url else "not set (`docs_url`)"))
    if config.health is not None:
        health = f"{code(f'{config.health.method} {config.health.path}')} (what `tether doctor {name}` sends)"
    else:
        health = f"none (`health`): `tether doctor {name}` cannot test the credentials or the content"
    lines.append(item("Health request", health))
    if config.headers:
        # A header may have been written with a literal credential; its name says so, and its value stays out.
        shown = [
            code(f"{header}: ***" if is_sensitive_name(header) else f"{header}: {value}")
            for header, value in sorted(config.headers.items())
        ]
        lines.append(item("Headers on every request", ", ".join(shown)))
    if config.openapi is not None:
        checked = "; every JSON response is checked against it (`validate = true`)" if config.validate_responses else ""
        lines.append(item("OpenAPI document", code(config.openapi) + checked))
    return lines


def timeout_text(timeout: TimeoutConfig) -> str:
    """``total "30s" across every attempt; each attempt: connect "5s", …``."""
    parts = [f"connect {code(duration(timeout.connect))}"]
    parts.append(f"read {code(duration(timeout.read))}" if timeout.read is not None else "read up to the deadline")
    if timeout.write is not None:
        parts.append(f"write {code(duration(timeout.write))}")
    parts.append(f"pool {code(duration(timeout.pool))}")
    return f"{code(duration(timeout.total))} in total, one deadline across every attempt; each attempt: " + ", ".join(
        parts
    )


def retry_text(retry: RetryConfig, idempotency_header: str | None) -> str:
    """How many attempts, how long between them, and what is retried."""
    if retry.attempts == 1:
        return "off: one attempt per call (`retry = false` or `attempts = 1`)"
    parts = [
        f"{retry.attempts} attempts (the call and up to {plural(retry.attempts - 1, 'retry', 'retries')}), "
        f"waits drawn from zero to {code(duration(retry.backoff))} doubling each retry, at most "
        f"{code(duration(retry.max_backoff))} (full jitter)",
        "statuses " + ", ".join(str(status) for status in sorted(retry.statuses)),
        "after connect errors, timeouts and dropped connections",
        "methods " + ", ".join(sorted(retry.methods)),
    ]
    if idempotency_header:
        parts.append(
            f"POST and PATCH too: tether adds a fresh {code(idempotency_header)} to each, reused on every attempt"
        )
    else:
        parts.append("POST and PATCH only when the caller sets an `Idempotency-Key`")
    parts.append(
        f"retry budget {retry.budget:.0%} of the calls over 10 s"
        if retry.budget < 1
        else "no retry budget (`budget = 1.0`)"
    )
    parts.append(
        "`Retry-After` and rate-limit reset headers honoured"
        if retry.respect_retry_after
        else "`Retry-After` ignored (`respect_retry_after = false`)"
    )
    return "; ".join(parts)


def rate_text(rate: RateLimitConfig, *, queueing: bool = True) -> str:
    """``25 requests per second (burst 1)``, and with ``queueing`` how long a call waits for a slot."""
    per = _PER.get(rate.per)
    window = f"per {per}" if per else f"per {code(duration(rate.per))}"
    said = f"{rate.requests:g} requests {window} (burst {rate.burst})"
    if not queueing:
        return said
    wait = f"at most {code(duration(rate.max_wait))}" if rate.max_wait is not None else "up to its deadline"
    return f"{said}; a call waits {wait} for a slot, then fails with `ThrottledError`"


def breaker_text(breaker: BreakerConfig) -> str:
    """When the breaker opens and for how long."""
    if not breaker.enabled:
        return "off (`breaker = false`)"
    slow = f"; calls slower than {code(duration(breaker.slow_call))} count as failures" if breaker.slow_call else ""
    return (
        f"opens when {breaker.failure_ratio:.0%} of at least {plural(breaker.min_calls, 'call')} over "
        f"{code(duration(breaker.window))} failed (5xx, 408, timeouts, connection errors){slow}; stays open "
        f"{code(duration(breaker.open_for))}, failing calls at once with `CircuitOpenError`; then "
        f"{plural(breaker.probes, 'probe')} decide{'s' if breaker.probes == 1 else ''}"
    )


def limit_lines(config: IntegrationConfig, state: str) -> list[str]:
    """Timeout, retry, rate limit, AI tokens, concurrency, breaker, endpoint groups, cache and fallback."""
    lines = [
        item("Timeout", timeout_text(config.timeout)),
        item("Retry", retry_text(config.retry, config.idempotency_header)),
    ]
    if config.rate_limit is not None:
        limit = rate_text(config.rate_limit)
    else:
        limit = "none configured; tether still pauses every caller on a 429's `Retry-After` or an exhausted budget"
    shared = (
        "shared by every process through Redis" if state != "memory" else 'counted per process (`state = "memory"`)'
    )
    lines.append(item("Rate limit", f"{limit}; {shared}"))
    if config.tokens_per_minute is not None:
        lines.append(
            item("AI tokens", f"{config.tokens_per_minute:,} per minute, debited from each response's `usage`")
        )
    if config.concurrency is not None:
        lines.append(item("Concurrency", f"at most {plural(config.concurrency, 'call')} in flight per process"))
    lines.append(item("Circuit breaker", breaker_text(config.breaker)))
    for pattern, group in config.endpoints.items():
        parts = []
        if group.rate_limit is not None:
            parts.append("rate limit " + rate_text(group.rate_limit, queueing=False))
        if group.tokens_per_minute is not None:
            parts.append(f"{group.tokens_per_minute:,} AI tokens per minute")
        if group.breaker is not None:
            parts.append("its own breaker: " + breaker_text(group.breaker))
        lines.append(item(f"Endpoints {code(pattern)}", "; ".join(parts)))
    lines.append(item("Cache", _cache(config)))
    lines.append(item("Fallback", _fallback(config)))
    return lines


def _cache(config: IntegrationConfig) -> str:
    cache = config.cache
    if not cache.enabled:
        return "off"
    honoured = "GET and HEAD, as the API's `Cache-Control`, `ETag` and `Last-Modified` say"
    if not cache.ttl:
        return honoured
    ttls = ", ".join(f"{code(pattern)} for {code(duration(ttl))}" for pattern, ttl in cache.ttl.items())
    return f"{honoured}; fresh for a fixed time: {ttls}"


def _fallback(config: IntegrationConfig) -> str:
    fallback = config.fallback
    if not fallback.configured:
        return "none: when the API is down the error is raised"
    parts = []
    if fallback.stale:
        which = "every GET" if fallback.stale is True else ", ".join(code(p) for p in fallback.stale)
        parts.append(
            f"the last good response (flagged `X-Tether-Stale: 1`) for {which}, up to "
            f"{code(duration(fallback.max_stale))} past its freshness"
        )
    if fallback.static:
        statics = ", ".join(f"{code(pattern)} → {response.status}" for pattern, response in fallback.static.items())
        parts.append(f"fixed responses for {statics}")
    return "; ".join(parts) + " (on an open breaker, a timeout, a connection error or a 5xx)"


def browser_lines(name: str, config: IntegrationConfig) -> list[str]:
    """Browser origins and the backend proxy: how a web page may reach this API without holding its key."""
    if config.cors_origins:
        origins = ", ".join(code(origin) for origin in config.cors_origins)
        cors = f"{origins}; `tether doctor {name}` checks the preflight from each"
    else:
        cors = "none configured: no browser is expected to call this API directly (`cors_origins`)"
    lines = [item("Browser origins", cors)]
    proxy = config.proxy
    if proxy is not None and proxy.enabled:
        allowed = ", ".join(code(pattern) for pattern in proxy.allow)
        lines.append(
            item(
                "Backend proxy",
                f"`/proxy/{name}/…` on `tether serve` allows {allowed} (anything else answers 403); it adds the "
                "credentials on the server, so the browser holds only `TETHER_PROXY_TOKEN`, never the key",
            )
        )
    else:
        off = "off (`proxy.enabled = false`)" if proxy is not None else "not configured"
        lines.append(item("Backend proxy", f"{off}: browsers cannot reach this API through `tether serve`"))
    return lines


def alert_lines(name: str, config: IntegrationConfig, whole: TetherConfig) -> list[str]:
    """The alert rules in effect for this integration, and who is told (notifier types only: their URLs are
    often secrets)."""
    if not config.alerts.enabled:
        return [item("Alerts", f"off for this integration (`[integrations.{name}.alerts] enabled = false`)")]
    rules = config.alerts.over(whole.alerts)
    window = code(duration(rules.window))
    active = []
    if rules.error_rate is not None:
        active.append(f"error rate above {rules.error_rate:.0%} over {window} (at least {rules.min_calls} calls)")
    if rules.latency_p95 is not None:
        active.append(f"p95 latency above {code(duration(rules.latency_p95))}")
    if rules.rate_limit_usage is not None:
        active.append(f"rate-limit usage at {rules.rate_limit_usage:.0%} or more")
    if rules.auth_failures is not None:
        active.append(f"{rules.auth_failures} or more 401/403 answers over {window}")
    if rules.circuit_open:
        active.append("breaker open")
    if rules.deprecation:
        active.append("`Deprecation` or `Sunset` from the API")
    if rules.tls_expiry is not None:
        active.append(f"certificate expiring within {code(duration(rules.tls_expiry))}")
    if rules.token_budget is not None:
        active.append(f"more than {rules.token_budget:,} AI tokens in 24 h")
    notify = ", ".join(sorted({notifier.type for notifier in whole.alerts.notify})) or "nobody"
    return [
        item("Alert rules", "; ".join(active) or "every rule disabled"),
        item("Notified by", f"{notify} (`[alerts] notify`), once when an incident fires and once when it resolves"),
    ]


def notes_lines(config: IntegrationConfig) -> list[str]:
    """Known limitations, from ``notes``: one item per line written."""
    if not config.notes or not config.notes.strip():
        return ["_None written (`notes`)._"]
    lines = [line.strip() for line in config.notes.splitlines() if line.strip()]
    # A bullet the author wrote is the list's own.
    return [f"- {text(line.removeprefix('- ').removeprefix('* '))}" for line in lines]
