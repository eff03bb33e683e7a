"""The *Current health* parts of the runbook: the summary at the top and each integration's own table.

Every number comes with the time it was taken; a runbook read a week later must not pass off stale numbers
as current. When there is nothing to show, the page says why in plain words.
"""

from __future__ import annotations

from typing import Any

from tether.docs._text import code, plural, table, text, timestamp
from tether.docs.live import LiveState
from tether.observe.health import Health, latency_text

__all__ = ["integration_health_lines", "summary_lines"]


def summary_lines(live: LiveState, names: list[str]) -> list[str]:
    """The document's *Current health* section: when, from where, and a row per integration."""
    store = code(live.store)
    if live.status == "skipped":
        return [
            "Not included: this runbook was generated with `--no-health`, so it comes out the same on every run. "
            "`tether status` shows the live numbers; `tether docs` without `--no-health` writes them here."
        ]
    if live.status == "empty":
        return [f"No health to show from the store {store}: {text(live.reason)}."]
    if live.status == "unavailable":
        return [
            f"**Unavailable:** the store {store} could not be read ({text(live.reason)}). Everything else in this "
            "runbook comes from the config alone; `tether doctor` checks the integrations live."
        ]
    assert live.taken_at is not None
    lines = [f"As of **{timestamp(live.taken_at)}**, over the last hour, from the store {store}.", ""]
    if not live.calls:
        lines += [
            "No calls were recorded in that hour: nothing called these APIs through tether with recording on.",
            "",
        ]
    rows = []
    for name in names:
        health = live.health.get(name)
        if health is None:
            continue
        rows.append(
            [
                text(name),
                str(health.requests),
                _errors(health),
                latency_text(health.p95),
                health.breaker,
                str(len(health.alerts)) if health.alerts else "none",
            ]
        )
    lines += table(["integration", "calls", "errors", "p95", "breaker", "open alerts"], rows)
    return lines


def integration_health_lines(name: str, live: LiveState) -> list[str]:
    """An integration's *Current health* section."""
    health = live.health.get(name)
    if live.status != "ok" or health is None:
        return ["_Not included; see [Current health](#current-health)._"]
    assert live.taken_at is not None
    if not (health.requests or health.alerts or health.errors or any((health.inbox or {}).values())):
        return [f"No calls recorded in the hour before {timestamp(live.taken_at)}."]
    lines = [f"As of {timestamp(live.taken_at)}, over the last hour:", ""]
    rows = [
        ["calls", f"{health.requests} ({plural(health.failures, 'failure')}, {_errors(health)})"],
        ["latency p50 / p95", f"{latency_text(health.p50)} / {latency_text(health.p95)}"],
        ["rate-limit usage", _usage(health)],
        ["circuit breaker", health.breaker],
        ["credentials", _token(health.token)],
    ]
    if health.inbox is not None:
        rows.append(["webhook inbox", _inbox(health.inbox)])
    if health.version or health.deprecation or health.sunset:
        rows.append(["API version", _version(health)])
    lines += table(["measure", "value"], rows)
    if health.alerts:
        lines += ["", "Open alerts:", ""]
        lines += [
            f"- {code(alert['rule'])} since {timestamp(float(alert['started_at']))}: {text(alert['message'])}"
            for alert in health.alerts
        ]
    if health.errors:
        lines += ["", "Last failures:", ""]
        lines += [_failure(error) for error in health.errors]
    return lines


def _errors(health: Health) -> str:
    return f"{health.error_rate:.1%}" if health.requests else "-"


def _usage(health: Health) -> str:
    if health.usage is None:
        return "-"
    limit = f" of {text(health.rate_limit)}" if health.rate_limit else ""
    return f"{health.usage:.0%}{limit}"


def _token(token: dict[str, Any] | None) -> str:
    if token is None:
        return "none"
    if token["type"] != "oauth2":
        return f"static ({text(token['type'])})"
    state = text(token["state"])
    if token.get("expires_in") is not None and token["state"] == "valid":
        return f"OAuth token valid, {token['expires_in']:.0f} s left"
    return f"OAuth token {state}"


def _inbox(inbox: dict[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in inbox.items() if count) or "empty"


def _version(health: Health) -> str:
    parts = [code(health.version, in_table=True)] if health.version else []
    if health.deprecation:
        parts.append(f"deprecated ({text(health.deprecation)})")
    if health.sunset:
        parts.append(f"sunset {text(health.sunset)}")
    return ", ".join(parts)


def _failure(error: dict[str, Any]) -> str:
    outcome = f"HTTP {error['status']}" if error.get("status") else text(error.get("error") or "failed")
    hint = f": {text(error['hint'])}" if error.get("hint") else ""
    call = code(f"{error['method']} {error['endpoint']}")
    return f"- {timestamp(float(error['at']))} {call} → {outcome}{hint}"
