"""Each integration's health, as the dashboard, ``tether status`` and the alerts show it.

Everything here is read from the store, so it covers the calls of every process that shares it: numbers and
charts from the per-minute summaries (cheap at any volume), the last errors from the call records, the
breaker from the calls it refused, OAuth tokens from the token store and the webhook inbox's counts. No
value of a secret is read or returned: a credential appears as where it comes from (``env var NAME``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tether.config.auth import OAuth2AuthConfig
from tether.config.models import RateLimitConfig
from tether.observe.log import logger
from tether.observe.records import CallRecord
from tether.observe.summary import Minute

if TYPE_CHECKING:
    from tether.hub import Hub

__all__ = [
    "MAX_POINTS",
    "RECENT",
    "Health",
    "Overview",
    "breaker_open",
    "chart_step",
    "latency_text",
    "overview",
    "recent_usage",
]

# The minutes read for what is true now (rate-limit usage, the breaker): this one and the one before.
RECENT = 120.0
# Charts get at most this many points; a step is the smallest of these (minutes) that keeps within it.
MAX_POINTS = 360
_STEPS = (1, 2, 5, 10, 15, 60, 120, 180, 360, 720, 1440)


@dataclass
class Health:
    """One integration's health over a window.

    Attributes:
        requests: Calls in the window.
        failures: Of which failed (no response, or status ≥ 400).
        error_rate: ``failures / requests`` (0 without calls).
        p50: Median latency in seconds (``None`` without calls).
        p95: 95th percentile latency in seconds.
        usage: The highest fraction of the rate limit in use in the last minute: the API's own figures
            (``x-ratelimit-*``/``RateLimit`` headers) or the calls against the configured ``rate_limit``.
        breaker: ``"closed"``, ``"open"`` (it refused calls in the last minute) or ``"off"``.
        token: OAuth 2.0 token state, or where a static credential comes from.
        inbox: Webhook events by status, for an integration that receives webhooks.
        alerts: The integration's open incidents.
        errors: Its last failed calls, newest first, each with the hint.
        series: Per chart step over the window (a minute up to 6 hours, coarser beyond, see
            :func:`chart_step`): ``t`` (the step's start, Unix seconds), ``requests``, ``error_rate``,
            ``p50`` and ``p95``.
    """

    name: str
    base_url: str
    owner: str | None = None
    requests: int = 0
    failures: int = 0
    error_rate: float = 0.0
    p50: float | None = None
    p95: float | None = None
    usage: float | None = None
    rate_limit: str | None = None
    tokens: int = 0
    breaker: str = "closed"
    token: dict[str, Any] | None = None
    inbox: dict[str, int] | None = None
    version: str | None = None
    deprecation: str | None = None
    sunset: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Overview:
    """Every integration's :class:`Health`, as of ``generated_at``, over the last ``window`` seconds."""

    generated_at: float
    window: float
    integrations: list[Health]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def overview(
    hub: Hub,
    *,
    window: float = 3600.0,
    now: float | None = None,
    alerts: Iterable[Mapping[str, Any]] = (),
    errors: int = 5,
    names: Iterable[str] | None = None,
) -> Overview:
    """The health of ``hub``'s integrations (all, or ``names``) over the last ``window`` seconds.

    Args:
        hub: The integrations and their store.
        window: Seconds of history for the numbers and the charts.
        now: The time to look back from (default: the clock's).
        alerts: Open incidents (each with at least ``integration``), shown with their integration.
        errors: How many of the last failed calls to show per integration.
        names: Only these integrations.
    """
    now = time.time() if now is None else now
    log = hub.call_log
    step = chart_step(window)
    history = log.series(now - window, now, step)
    totals = log.totals(now - window, now)
    recent = log.minutes(now - RECENT, now)
    chosen = list(names) if names is not None else sorted(hub.integrations)
    counts = _inbox_counts(hub, chosen)
    by_integration: dict[str, list[dict[str, Any]]] = {}
    for incident in alerts:
        by_integration.setdefault(str(incident["integration"]), []).append(dict(incident))
    result = []
    for name in chosen:
        config = hub.integration(name)
        total = totals.get(name) or Minute()
        latest = recent.get(name, [])
        health = Health(
            name=name,
            base_url=str(config.base_url),
            owner=config.owner,
            requests=total.calls,
            failures=total.failures,
            error_rate=total.error_rate,
            p50=total.quantile(0.5),
            p95=total.quantile(0.95),
            usage=recent_usage(config.rate_limit, latest, now),
            rate_limit=_rate(config.rate_limit),
            tokens=total.tokens,
            breaker=_breaker(config.breaker.enabled, latest, now),
            token=_token(hub, name, now),
            inbox=counts.get(name) if config.webhooks is not None else None,
            version=total.version or config.version,
            deprecation=total.deprecation,
            sunset=total.sunset,
            alerts=by_integration.get(name, []),
            errors=[_error(stored.record) for stored in log.failures(name, limit=errors)] if errors else [],
            series=_series(history.get(name, []), now, window, step),
        )
        result.append(health)
    return Overview(generated_at=now, window=window, integrations=result)


def chart_step(window: float) -> int:
    """Minutes per chart point for a window of ``window`` seconds: one minute up to 6 hours, then coarser
    so a chart never has more than :data:`MAX_POINTS` points (from 4 days on, whole hours)."""
    minutes = math.ceil(window / 60)
    return next((step for step in _STEPS if minutes <= step * MAX_POINTS), _STEPS[-1])


def recent_usage(rate_limit: RateLimitConfig | None, minutes: list[Minute], now: float) -> float | None:
    """The highest fraction of the rate limit in use in the last minute or so: the API's own figures or the
    calls against the configured ``rate_limit``, whichever is higher (``None`` when neither is known)."""
    current = int(now // 60)
    recent = [minute for minute in minutes if minute.minute >= current - 1]
    usage = max((m.max_usage for m in recent if m.max_usage is not None), default=None)
    if rate_limit is not None and recent:
        per_minute = rate_limit.requests / rate_limit.per * 60.0
        # The last whole minute, or the current one so far if it is busier already.
        busiest = max(m.calls for m in recent)
        ours = min(1.0, busiest / per_minute) if per_minute > 0 else None
        if ours is not None and (usage is None or ours > usage):
            usage = ours
    return usage


def breaker_open(minutes: list[Minute], now: float) -> bool:
    """Whether the breaker refused a call in this minute or the one before (``minutes`` as of :data:`RECENT`)."""
    current = int(now // 60)
    return any(minute.rejected for minute in minutes if minute.minute >= current - 1)


def latency_text(seconds: float | None) -> str:
    """A latency as people read it: ``"250 ms"``, ``"3.10 s"``, ``"-"`` without one."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _rate(rate_limit: RateLimitConfig | None) -> str | None:
    if rate_limit is None:
        return None
    per = rate_limit.per
    unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(per, f"{per:g}s")
    return f"{rate_limit.requests:g}/{unit}"


def _breaker(enabled: bool, minutes: list[Minute], now: float) -> str:
    if not enabled:
        return "off"
    return "open" if breaker_open(minutes, now) else "closed"


def _token(hub: Hub, name: str, now: float) -> dict[str, Any] | None:
    auth = hub.integration(name).auth
    if auth is None:
        return None
    if not isinstance(auth, OAuth2AuthConfig):
        return {"type": auth.type, "state": "static"}
    try:
        tokens = hub.token_manager(name).stored()
    except Exception as exc:  # a token store that cannot be read is a state to show, not a crash
        logger.debug("tether: cannot read %s's token: %s", name, exc)
        return {"type": "oauth2", "state": "unreadable"}
    if tokens is None:
        return {"type": "oauth2", "state": "none yet"}
    if tokens.revoked:
        return {"type": "oauth2", "state": "revoked"}
    expires_in = None if tokens.expires_at is None else round(tokens.expires_at - now, 1)
    state = "valid" if tokens.valid(now) else "expired"
    return {"type": "oauth2", "state": state, "expires_in": expires_in, "refresh_token": bool(tokens.refresh_token)}


def _inbox_counts(hub: Hub, names: list[str]) -> dict[str, dict[str, int]]:
    if not any(hub.integration(name).webhooks is not None for name in names):
        return {}
    try:
        return hub.inbox.counts()
    except Exception as exc:
        logger.debug("tether: cannot read the webhook inbox: %s", exc)
        return {}


def _error(record: CallRecord) -> dict[str, Any]:
    return {
        "at": record.at,
        "method": record.method,
        "endpoint": record.endpoint,
        "status": record.status,
        "error": record.error,
        "hint": record.hint,
        "attempts": record.attempts,
        "peer": record.peer,
        "request_id": record.request_id,
    }


def _series(slots: list[Minute], now: float, window: float, step: int) -> dict[str, list[Any]]:
    by_slot = {slot.minute: slot for slot in slots}
    last = int(now // 60) // step * step
    first = int((now - window) // 60) // step * step
    if step == 1:  # a window of whole minutes: the current one and the ones before it
        first = last - max(1, int(window // 60)) + 1
    series: dict[str, list[Any]] = {"t": [], "requests": [], "error_rate": [], "p50": [], "p95": []}
    for index in range(first, last + 1, step):
        minute = by_slot.get(index)
        series["t"].append(index * 60)
        series["requests"].append(minute.calls if minute else 0)
        series["error_rate"].append(round(minute.error_rate, 4) if minute and minute.calls else None)
        series["p50"].append(_round(minute.quantile(0.5)) if minute else None)
        series["p95"].append(_round(minute.quantile(0.95)) if minute else None)
    return series


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
