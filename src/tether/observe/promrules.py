"""tether's alert rules as Prometheus alerting rules, for teams whose alerts live in Alertmanager.

:func:`prometheus_rules` writes one rule group over the metrics ``/metrics`` exposes, with the thresholds
``tether.toml`` gives: for each rule, one Prometheus rule with the ``[alerts]`` defaults for every integration
that does not override that rule (``integration!~"a|b"``, so integrations that appear later are covered too),
and one rule per integration that does (``integration="a"``). Disabled rules and silenced integrations get
none. ``keep_firing_for`` is tether's ``resolve_after``, so Prometheus has the same hysteresis as tether.

The YAML is written by hand (a fixed shape, strings quoted as JSON, which YAML reads as double-quoted
scalars) rather than adding a YAML library for one command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from tether.config.models import TetherConfig
from tether.config.monitoring import AlertRules, IntegrationAlerts

__all__ = ["prometheus_rules"]

_Built = tuple[str, str, str]  # expr, summary, description
_WHO = "{{ $labels.integration }}"


@dataclass(frozen=True)
class _Spec:
    rule: str
    alert: str
    severity: str
    shaped_by: tuple[str, ...]  # the AlertRules fields that change this rule's expression
    for_: float  # seconds the condition must hold before Prometheus fires (0: at once)
    build: Callable[[AlertRules, str], _Built]


def _error_rate(rules: AlertRules, match: str) -> _Built:
    w, limit = _duration(rules.window), rules.error_rate or 0.0
    failed = _sel(match, 'error="true"')
    expr = (
        "(\n"
        f"  sum by (integration) (rate(tether_requests_total{failed}[{w}]))\n"
        f"  / sum by (integration) (rate(tether_requests_total{_sel(match)}[{w}]))\n"
        f") > {_num(limit)}\n"
        "and on (integration)\n"
        f"sum by (integration) (increase(tether_requests_total{_sel(match)}[{w}])) >= {rules.min_calls}"
    )
    summary = f"{_WHO}: error rate {{{{ $value | humanizePercentage }}}} over {w}, above {_pct(limit)}"
    description = (
        f"More than {_pct(limit)} of the calls to {_WHO} failed (no response, or a status of 400 or more) over "
        f"the last {w}, counting only when there were at least {rules.min_calls} calls. "
        f"Run `tether doctor {_WHO}` and check the API's status page."
    )
    return expr, summary, description


def _latency(rules: AlertRules, match: str) -> _Built:
    w, limit = _duration(rules.window), rules.latency_p95 or 0.0
    expr = (
        "histogram_quantile(0.95,\n"
        f"  sum by (integration, le) (rate(tether_request_duration_seconds_bucket{_sel(match)}[{w}]))\n"
        f") > {_num(limit)}\n"
        "and on (integration)\n"
        f"sum by (integration) (increase(tether_request_duration_seconds_count{_sel(match)}[{w}])) >= {rules.min_calls}"
    )
    summary = f"{_WHO}: p95 latency {{{{ $value | humanizeDuration }}}} over {w}, above {_duration(limit)}"
    description = (
        f"One call in twenty to {_WHO} took longer than {_duration(limit)} over the last {w} (counting only when "
        f"there were at least {rules.min_calls} calls). Slow answers hold workers and eat into timeouts; check "
        "the API's status page and the call log."
    )
    return expr, summary, description


def _rate_limit(rules: AlertRules, match: str) -> _Built:
    limit = rules.rate_limit_usage or 0.0
    expr = f"max by (integration) (tether_rate_limit_usage_ratio{_sel(match)}) > {_num(limit)}"
    summary = f"{_WHO}: {{{{ $value | humanizePercentage }}}} of the rate limit in use, above {_pct(limit)}"
    description = (
        f"{_WHO} is close to its rate limit; soon calls will wait or get 429. "
        "Spread the load, cache more, or ask the provider for a higher limit."
    )
    return expr, summary, description


def _auth_failures(rules: AlertRules, match: str) -> _Built:
    w, count = _duration(rules.window), rules.auth_failures or 0
    refused = _sel(match, 'code=~"401|403"')
    expr = f"sum by (integration) (increase(tether_requests_total{refused}[{w}])) >= {count}"
    summary = f"{_WHO}: {{{{ $value | humanize }}}} answers 401/403 over {w}, {count} or more"
    description = (
        f"{_WHO} refused tether's credentials repeatedly over the last {w}: a key was revoked, rotated or "
        f"lacks a permission. Run `tether auth status` and `tether doctor {_WHO}`."
    )
    return expr, summary, description


def _circuit_open(rules: AlertRules, match: str) -> _Built:
    expr = f"max by (integration) (tether_circuit_open{_sel(match)}) == 1"
    summary = f"{_WHO}: circuit breaker open"
    description = (
        f"Calls to {_WHO} fail at once without reaching the API (after too many failures in a row); "
        "fallbacks answer where configured. The breaker probes the API and closes when it recovers."
    )
    return expr, summary, description


def _deprecation(rules: AlertRules, match: str) -> _Built:
    expr = f"max by (integration) (tether_api_deprecated{_sel(match)}) == 1"
    summary = f"{_WHO}: the API announces deprecation (Deprecation or Sunset header)"
    description = (
        f"{_WHO} answers with Deprecation or Sunset headers: the version or endpoints in use will go away. "
        "The dashboard shows the dates; plan the upgrade."
    )
    return expr, summary, description


def _tls_expiry(rules: AlertRules, match: str) -> _Built:
    within = rules.tls_expiry or 0.0
    expr = (
        f"min by (integration) (tether_tls_certificate_expiry_timestamp_seconds{_sel(match)}) - time() < {_num(within)}"
    )
    summary = f"{_WHO}: TLS certificate expires in {{{{ $value | humanizeDuration }}}}, within {_duration(within)}"
    description = (
        f"The certificate {_WHO} presents expires soon (or has expired); calls will fail with a TLS error "
        "when it does. Tell the provider, or check a pinned CA bundle if it is yours."
    )
    return expr, summary, description


def _token_budget(rules: AlertRules, match: str) -> _Built:
    budget = rules.token_budget or 0
    expr = f"sum by (integration) (increase(tether_ai_tokens_total{_sel(match)}[1d])) > {budget}"
    summary = f"{_WHO}: {{{{ $value | humanize }}}} AI tokens over 24h, above the budget of {budget}"
    description = f"{_WHO} used more AI tokens over the last 24 hours than its daily budget of {budget}."
    return expr, summary, description


_SPECS = (
    _Spec("error_rate", "TetherErrorRate", "critical", ("error_rate", "min_calls", "window"), 60, _error_rate),
    _Spec("latency_p95", "TetherLatencyP95", "warning", ("latency_p95", "min_calls", "window"), 60, _latency),
    _Spec("rate_limit_usage", "TetherRateLimitUsage", "warning", ("rate_limit_usage",), 120, _rate_limit),
    _Spec("auth_failures", "TetherAuthFailures", "critical", ("auth_failures", "window"), 0, _auth_failures),
    _Spec("circuit_open", "TetherCircuitOpen", "critical", ("circuit_open",), 0, _circuit_open),
    _Spec("deprecation", "TetherApiDeprecated", "info", ("deprecation",), 0, _deprecation),
    _Spec("tls_expiry", "TetherTlsCertificateExpiry", "warning", ("tls_expiry",), 600, _tls_expiry),
    _Spec("token_budget", "TetherTokenBudget", "warning", ("token_budget",), 0, _token_budget),
)
"""Why each ``for``: ratios over a window get a minute so one odd scrape (a restart) does not page; the rate
limit gauge is instantaneous and needs a sustained reading; the TLS expiry gauge moves slowly and is never
urgent to the minute; a burst of 401s, an open breaker, a deprecation header and a spent budget are already
sustained facts."""


def prometheus_rules(config: TetherConfig) -> str:
    """Prometheus alerting rules (YAML) equivalent to the alert rules of ``config``.

    Args:
        config: The whole configuration: ``[alerts]`` and each ``[integrations.NAME.alerts]``.

    Returns:
        A rule file for Prometheus' ``rule_files`` (check it with ``promtool check rules``).
    """
    alerts = config.alerts
    defaults = IntegrationAlerts().over(alerts)  # less the rules [alerts] disable
    effective = {
        name: integration.alerts.over(alerts)
        for name, integration in sorted(config.integrations.items())
        if integration.alerts.enabled
    }
    silenced = [name for name, integration in config.integrations.items() if not integration.alerts.enabled]
    lines = [
        "# Prometheus alerting rules generated by `tether alerts export --prometheus`.",
        "# tether.toml is their source: change the thresholds there and export again rather than editing here.",
        "groups:",
        "  - name: tether",
        f"    interval: {_duration(alerts.interval)}",
        "    rules:",
    ]
    emitted = 0
    for spec in _SPECS:

        def shape(rules: AlertRules, spec: _Spec = spec) -> tuple[object, ...]:
            return tuple(getattr(rules, field) for field in spec.shaped_by)

        own = [name for name, rules in effective.items() if shape(rules) != shape(defaults)]
        if _enabled(defaults, spec):
            others = sorted([*own, *silenced])
            match = f'integration!~"{"|".join(_regex(name) for name in others)}"' if others else ""
            lines += _rule(spec, defaults, match, alerts.resolve_after)
            emitted += 1
        for name in own:
            if _enabled(effective[name], spec):
                selector = f"integration={json.dumps(name)}"
                lines += _rule(spec, effective[name], selector, alerts.resolve_after, integration=name)
                emitted += 1
    if not emitted:
        lines[-1] = "    rules: []"
    return "\n".join(lines) + "\n"


def _enabled(rules: AlertRules, spec: _Spec) -> bool:
    return getattr(rules, spec.rule) not in (None, False)


def _rule(
    spec: _Spec, rules: AlertRules, match: str, resolve_after: float, *, integration: str | None = None
) -> list[str]:
    expr, summary, description = spec.build(rules, match)
    lines = [f"      - alert: {spec.alert}", "        expr: |"]
    lines += [f"          {line}" for line in expr.splitlines()]
    if spec.for_:
        lines.append(f"        for: {_duration(spec.for_)}")
    if resolve_after:
        lines.append(f"        keep_firing_for: {_duration(resolve_after)}")
    lines += [
        "        labels:",
        f"          severity: {json.dumps(spec.severity)}",
        f"          rule: {json.dumps(spec.rule)}",
        '          source: "tether"',
        # The series carry this label already; on the rule it tells it apart from the default one (promtool
        # reports two rules of one name with the same labels as duplicates).
        *([f"          integration: {json.dumps(integration)}"] if integration else []),
        "        annotations:",
        f"          summary: {json.dumps(summary)}",
        f"          description: {json.dumps(description)}",
    ]
    return lines


def _sel(*matchers: str) -> str:
    """A PromQL label selector of the non-empty ``matchers`` (nothing when there are none)."""
    chosen = [matcher for matcher in matchers if matcher]
    return "{" + ",".join(reversed(chosen)) + "}" if chosen else ""


def _regex(name: str) -> str:
    # Names are letters, digits, "_", "-" and "."; only the dot means something to RE2, and the backslash
    # that escapes it must itself be escaped inside a PromQL string.
    return name.replace(".", "\\\\.")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration: ``5m``, ``1h30m``, ``14d``, ``1500ms``."""
    if not float(seconds).is_integer():
        return f"{round(seconds * 1000)}ms"
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
