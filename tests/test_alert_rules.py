"""The alert rules measured from the call log: each threshold, the overrides, and the monitor end to end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tether
from tether.config.loader import parse_config
from tether.observe.incidents import Condition
from tether.observe.records import CallRecord
from tether.observe.rules import conditions
from tether.observe.tls import CertificateInfo
from tether.sandbox.server import SandboxServer
from tether.server.monitor import Monitor

NOW = 1_800_000_030.0  # 30 s into a minute


def _hub(tmp_path: Path, extra: str = "", integration: str = "") -> tether.Hub:
    config = parse_config(
        f"""
        store = "sqlite:///{tmp_path}/tether.db"
        {extra}
        [integrations.pay]
        base_url = "https://api.pay.test"
        {integration}
        """
    )
    return tether.Hub(config, base_dir=tmp_path)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tether.Hub]:
    with _hub(tmp_path) as hub:
        yield hub


def _calls(count: int, *, ago: float = 10.0, **fields: object) -> list[CallRecord]:
    base: dict[str, object] = {"integration": "pay", "method": "GET", "endpoint": "/v1/x", "status": 200}
    base["outcome"] = "success"
    base.update(fields)
    return [CallRecord(at=NOW - ago, latency=0.05, **base) for _ in range(count)]  # type: ignore[arg-type]


def _rule(hub: tether.Hub, rule: str, **kwargs: object) -> Condition:
    found = [c for c in conditions(hub, now=NOW, **kwargs) if c.rule == rule]  # type: ignore[arg-type]
    assert len(found) == 1, found
    return found[0]


def test_an_error_rate_above_five_percent_fires(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(27) + _calls(3, status=503, outcome="attempts exhausted"))

    condition = _rule(hub, "error_rate")

    assert condition.firing
    assert condition.value == 0.1
    assert "10.0% over 5m (3 of 30 calls), above 5%" in condition.message


def test_an_error_rate_at_or_below_the_threshold_does_not_fire(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(39) + _calls(1, status=500))

    assert not _rule(hub, "error_rate").firing


def test_too_few_calls_are_not_judged_however_many_fail(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(5) + _calls(5, status=None, outcome="attempts exhausted", error="ConnectTimeoutError"))

    condition = _rule(hub, "error_rate")

    assert not condition.firing
    assert "fewer than 20 calls, not judged" in condition.message


def test_calls_older_than_the_window_do_not_count(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(30, status=503, ago=3600) + _calls(30))

    assert not _rule(hub, "error_rate").firing


@pytest.mark.parametrize(("slow", "fires"), [(6, True), (4, False)])
def test_a_p95_above_three_seconds_fires_and_a_slow_few_do_not(hub: tether.Hub, slow: int, fires: bool) -> None:
    slow_calls = [CallRecord(NOW - 5, "pay", "GET", "/v1/x", 200, "success", latency=4.0) for _ in range(slow)]
    hub.call_log.write(_calls(100 - slow) + slow_calls)

    assert _rule(hub, "latency_p95").firing is fires, f"{slow}% of calls slower than 3 s"


def test_a_burst_of_401_and_403_fires_the_auth_rule(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(3, status=401) + _calls(2, status=403))

    condition = _rule(hub, "auth_failures")

    assert condition.firing
    assert condition.value == 5


def test_a_refusal_by_the_breaker_this_minute_fires_and_one_minutes_ago_does_not(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(1, status=None, outcome="circuit open", attempts=0, ago=200))
    assert not _rule(hub, "circuit_open").firing

    hub.call_log.write(_calls(1, status=None, outcome="circuit open", attempts=0, ago=5))
    assert _rule(hub, "circuit_open").firing


def test_deprecation_and_sunset_headers_fire_with_the_date(hub: tether.Hub) -> None:
    sunset = "Wed, 11 Nov 2026 23:59:59 GMT"
    hub.call_log.write(_calls(1, deprecation="@1688169599", sunset=sunset, ago=7200))

    condition = _rule(hub, "deprecation")

    assert condition.firing, "seen two hours ago still counts: the lookback is a day"
    assert condition.value == sunset
    assert "@1688169599" in condition.message


def test_usage_reported_by_the_api_fires_at_eighty_percent(hub: tether.Hub) -> None:
    hub.call_log.write(_calls(1, limit=100.0, limit_remaining=15.0))

    condition = _rule(hub, "rate_limit_usage")

    assert condition.firing
    assert condition.value == 0.85


def test_usage_against_the_configured_rate_limit_counts_calls_per_minute(tmp_path: Path) -> None:
    with _hub(tmp_path, integration='rate_limit = "1/s"') as hub:
        hub.call_log.write(_calls(50))
        condition = _rule(hub, "rate_limit_usage")
        assert condition.firing, "50 calls this minute against 60 a minute: 83%"
        assert condition.value == pytest.approx(50 / 60, abs=0.001)


def test_the_ai_token_budget_counts_the_last_day(tmp_path: Path) -> None:
    with _hub(tmp_path, integration="alerts = { token_budget = 1000 }") as hub:
        hub.call_log.write(
            _calls(3, tokens=300, ago=80_000) + _calls(1, tokens=300) + _calls(5, tokens=999, ago=90_000)
        )
        condition = _rule(hub, "token_budget")
        assert condition.firing
        assert condition.value == 1200


def _certificate(days: float) -> CertificateInfo:
    not_after = datetime.fromtimestamp(NOW, UTC) + timedelta(days=days)
    return CertificateInfo("api.pay.test", 443, not_after, days, "CN=CA", "CN=api.pay.test", False, True, True, None)


def test_a_certificate_expiring_within_fourteen_days_fires(hub: tether.Hub) -> None:
    assert _rule(hub, "tls_expiry", tls={"pay": _certificate(10)}).firing
    assert not _rule(hub, "tls_expiry", tls={"pay": _certificate(30)}).firing
    assert "expired" in _rule(hub, "tls_expiry", tls={"pay": _certificate(-2)}).message


def test_an_integration_overrides_thresholds_and_disables_rules(tmp_path: Path) -> None:
    overrides = 'alerts = { error_rate = 0.2, disable = ["latency_p95", "deprecation"] }'
    with _hub(tmp_path, integration=overrides) as hub:
        hub.call_log.write(_calls(27) + _calls(3, status=503))
        measured = {c.rule: c for c in conditions(hub, now=NOW)}
        assert not measured["error_rate"].firing, "10% is within this integration's 20%"
        assert "latency_p95" not in measured
        assert "deprecation" not in measured


def test_an_integration_with_alerts_off_is_not_measured(tmp_path: Path) -> None:
    with _hub(tmp_path, integration="alerts = { enabled = false }") as hub:
        assert conditions(hub, now=NOW) == []


def test_global_thresholds_come_from_the_alerts_table(tmp_path: Path) -> None:
    with _hub(tmp_path, extra="[alerts]\nerror_rate = 0.5\nmin_calls = 2") as hub:
        hub.call_log.write(_calls(2) + _calls(1, status=500))
        assert not _rule(hub, "error_rate").firing, "33% is within 50%"


def test_the_monitor_opens_an_incident_from_real_failing_calls_and_shows_it(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    os.environ.setdefault("SANDBOX_API_KEY", "sk_test_sandbox")
    config = parse_config(
        f"""
        store = "sqlite:///{tmp_path}/tether.db"
        [alerts]
        min_calls = 5
        notify = []
        [integrations.sandbox]
        base_url = "{sandbox.url}"
        auth = {{ type = "api_key", key = "${{SANDBOX_API_KEY}}", name = "X-API-Key" }}
        retry = false
        """
    )
    with tether.Hub(config, base_dir=tmp_path) as hub:
        with hub.client("sandbox") as client:
            for number in range(10):
                client.get("/v1/customers" + ("?fault=status:503" if number % 2 else ""))
        hub.recorder.flush()  # type: ignore[union-attr]
        monitor = Monitor(hub, tls_every=1e9)

        monitor.evaluate()

        active = monitor.active()
        assert [(incident["integration"], incident["rule"]) for incident in active] == [("sandbox", "error_rate")]
        assert "5 of 10 calls" in active[0]["message"]
        firing = next(metric for metric in monitor.gauges() if metric.name == "tether_alerts_firing")
        assert [(s.labels, s.value) for s in firing.samples] == [
            ({"integration": "sandbox", "rule": "error_rate"}, 1.0)
        ]


def test_the_alerts_table_disables_a_rule_everywhere_unless_an_integration_sets_it(tmp_path: Path) -> None:
    with _hub(tmp_path, extra='[alerts]\ndisable = ["error_rate", "tls_expiry"]') as hub:
        assert "error_rate" not in {c.rule for c in conditions(hub, now=NOW)}
    (tmp_path / "again").mkdir()
    with _hub(
        tmp_path / "again", extra='[alerts]\ndisable = ["error_rate"]', integration="alerts = { error_rate = 0.2 }"
    ) as hub:
        hub.call_log.write(_calls(20) + _calls(10, status=500))
        assert _rule(hub, "error_rate").firing, "the integration's own threshold turns it back on"
