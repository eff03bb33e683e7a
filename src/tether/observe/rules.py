"""The alert rules, measured: one :class:`~tether.observe.incidents.Condition` per rule and integration.

Measurements come from the per-minute call summaries in the store (so they cover every process and cost the
same at any volume), at minute resolution: "over 5 minutes" is the summaries of the minutes that overlap the
last 5 minutes. The TLS rule reads certificate checks made by ``tether serve`` (:mod:`tether.observe.tls`).
What a rule does not measure (no calls yet, a plain-HTTP base URL) is reported as not firing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from tether._durations import format_duration
from tether.config.monitoring import AlertRules
from tether.observe.health import RECENT, breaker_open, latency_text, recent_usage
from tether.observe.incidents import Condition
from tether.observe.summary import Minute

if TYPE_CHECKING:
    from tether.hub import Hub
    from tether.observe.tls import CertificateInfo

__all__ = ["conditions", "rules_for"]

# The token budget is per day, and Deprecation and Sunset headers are looked for this far back: an API that
# says it once a day still counts.
_DAY = 86400.0


def rules_for(hub: Hub, name: str) -> AlertRules | None:
    """The thresholds that apply to integration ``name`` (``None`` when its alerts are off)."""
    overrides = hub.integration(name).alerts
    return overrides.over(hub.config.alerts) if overrides.enabled else None


def conditions(
    hub: Hub, *, now: float | None = None, tls: Mapping[str, CertificateInfo | None] | None = None
) -> list[Condition]:
    """Every rule of every integration whose alerts are on, measured at ``now``."""
    now = time.time() if now is None else now
    tls = tls or {}
    chosen = {name: rules for name in sorted(hub.integrations) if (rules := rules_for(hub, name)) is not None}
    if not chosen:
        return []
    log = hub.call_log
    # Whole hours of a long lookback are read from the hourly summaries: a day costs ~24 rows, not 1,440.
    windows = {span: log.totals(now - span, now) for span in {rules.window for rules in chosen.values()}}
    day = log.totals(now - _DAY, now)
    recent = log.minutes(now - RECENT, now)
    result: list[Condition] = []
    for name, rules in chosen.items():
        window = windows[rules.window].get(name) or Minute()
        measured = _Measured(recent.get(name, []), window, day.get(name) or Minute())
        result += _measure(hub, name, rules, measured, now, tls.get(name))
    return result


class _Measured(NamedTuple):
    """What the rules of one integration read: the last minutes, the rule window, the last day."""

    recent: list[Minute]
    window: Minute
    day: Minute


def _measure(
    hub: Hub, name: str, rules: AlertRules, measured: _Measured, now: float, certificate: CertificateInfo | None
) -> list[Condition]:
    minutes, window = measured.recent, measured.window
    span = format_duration(rules.window)
    found: list[Condition] = []

    def add(rule: str, firing: bool, value: float | str | None, threshold: float | str | None, message: str) -> None:
        found.append(Condition(name, rule, firing, value, threshold, message))

    enough = window.calls >= rules.min_calls
    if rules.error_rate is not None:
        rate = window.error_rate
        add(
            "error_rate",
            enough and rate > rules.error_rate,
            round(rate, 4),
            rules.error_rate,
            f"error rate {rate:.1%} over {span} ({window.failures} of {window.calls} calls), "
            f"{'above' if rate > rules.error_rate else 'within'} {rules.error_rate:.0%}"
            + ("" if enough else f"; fewer than {rules.min_calls} calls, not judged"),
        )
    if rules.latency_p95 is not None:
        slow = window.slower_than(rules.latency_p95)
        p95 = window.quantile(0.95)
        add(
            "latency_p95",
            enough and slow > 0.05,
            None if p95 is None else round(p95, 3),
            rules.latency_p95,
            f"p95 latency {latency_text(p95)} over {span} ({slow:.1%} of {window.calls} calls slower than "
            f"{latency_text(rules.latency_p95)})",
        )
    if rules.rate_limit_usage is not None:
        usage = recent_usage(hub.integration(name).rate_limit, minutes, now)
        add(
            "rate_limit_usage",
            usage is not None and usage >= rules.rate_limit_usage,
            None if usage is None else round(usage, 3),
            rules.rate_limit_usage,
            "rate limit usage not reported yet"
            if usage is None
            else f"{usage:.0%} of the rate limit in use (alert at {rules.rate_limit_usage:.0%})",
        )
    if rules.auth_failures is not None:
        count = window.auth_failures
        add(
            "auth_failures",
            count >= rules.auth_failures,
            count,
            rules.auth_failures,
            f"{count} calls refused with 401/403 over {span} (alert at {rules.auth_failures}); "
            "check the credential and its permissions",
        )
    if rules.circuit_open:
        refusing = breaker_open(minutes, now)
        add(
            "circuit_open",
            refusing,
            "open" if refusing else "closed",
            None,
            "the circuit breaker is open: calls are refused without being sent"
            if refusing
            else "the circuit breaker is closed",
        )
    if rules.deprecation:
        seen = measured.day
        flagged = seen.deprecation or seen.sunset
        add(
            "deprecation",
            bool(flagged),
            seen.sunset or seen.deprecation,
            None,
            (
                f"the API marks calls as deprecated (Deprecation: {seen.deprecation or '-'}, "
                f"Sunset: {seen.sunset or '-'}); plan the migration"
            )
            if flagged
            else "no Deprecation or Sunset header in the last day",
        )
    if rules.tls_expiry is not None and certificate is not None:
        left = certificate.not_after.timestamp() - now
        add(
            "tls_expiry",
            left < rules.tls_expiry,
            certificate.not_after.date().isoformat(),
            format_duration(rules.tls_expiry),
            f"the TLS certificate {'expired' if left < 0 else 'expires'} on {certificate.not_after:%Y-%m-%d} "
            f"({left / _DAY:.0f} days {'ago' if left < 0 else 'left'})",
        )
    if rules.token_budget is not None:
        used = measured.day.tokens
        add(
            "token_budget",
            used > rules.token_budget,
            used,
            rules.token_budget,
            f"{used:,} AI tokens in the last 24h (budget {rules.token_budget:,})",
        )
    return found
