"""Incidents on SQLite and on the real PostgreSQL: one notification per fire and per resolve, hysteresis,
several instances sharing a store, notifiers that fail, and ``tether alerts list``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store_fixtures import PostgresSpace
from tether.cli.alerts import alerts
from tether.config.monitoring import AlertsConfig
from tether.observe.incidents import Alerter, Condition
from tether.observe.notify import LogNotify, Notification, NotifyError, WebhookNotify
from tether.store import Store
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore

T0 = 1_800_000_000.0


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A notifier that keeps what it is sent (thread-safe: two alerters may share it)."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        with self._lock:
            self.sent.append(notification)

    def states(self) -> list[tuple[str, str, str]]:
        return [(n.state, n.integration, n.rule) for n in self.sent]


class Flaky:
    """Fails ``failures`` times, then delivers."""

    name = "flaky notifier"

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise NotifyError(f"flaky notifier: attempt {self.calls} refused")


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "tether.db")
    space: PostgresSpace = request.getfixturevalue("postgres")
    return PostgresStore(space.url, max_connections=4)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(request.param, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def alerter(store: Store, recorder: Recorder, wall: Wall) -> Alerter:
    return Alerter(store, [recorder], resolve_after=120, wall=wall)


def error_rate(rate: float, integration: str = "stripe") -> Condition:
    above = rate > 0.05
    message = f"error rate {rate:.1%} over 5m, {'above' if above else 'below'} 5%"
    return Condition(integration, "error_rate", above, rate, 0.05, message)


def test_a_firing_condition_opens_an_incident_and_notifies_once(alerter: Alerter, recorder: Recorder) -> None:
    [sent] = alerter.evaluate([error_rate(0.125)])
    assert (sent.state, sent.integration, sent.rule, sent.started_at, sent.resolved_at) == (
        "firing",
        "stripe",
        "error_rate",
        T0,
        None,
    )
    assert sent.title == "FIRING stripe: error rate"
    assert recorder.sent == [sent]
    [incident] = alerter.active()
    assert (incident.id, incident.value, incident.threshold, incident.started_at) == (sent.incident, 0.125, 0.05, T0)
    assert incident.message == "error rate 12.5% over 5m, above 5%"


def test_while_firing_the_incident_follows_the_measurement_without_notifying(
    alerter: Alerter, recorder: Recorder, wall: Wall
) -> None:
    alerter.evaluate([error_rate(0.125)])
    wall.now += 15
    assert alerter.evaluate([error_rate(0.3)]) == []
    [incident] = alerter.active()
    assert (incident.value, incident.last_seen_at, incident.started_at) == (0.3, T0 + 15, T0)
    assert "30.0%" in incident.message
    assert len(recorder.sent) == 1


def test_an_incident_resolves_only_after_its_condition_stayed_quiet_for_resolve_after(
    alerter: Alerter, recorder: Recorder, wall: Wall
) -> None:
    alerter.evaluate([error_rate(0.2)])
    for _ in range(8):  # quiet for 0 … 105 s: not yet
        wall.now += 15
        assert alerter.evaluate([error_rate(0.01)]) == []
    assert alerter.active(), "still open within resolve_after"
    wall.now = T0 + 15 + 120  # 120 s after it was first seen quiet
    [resolved] = alerter.evaluate([error_rate(0.01)])
    assert (resolved.state, resolved.started_at, resolved.resolved_at) == ("resolved", T0, wall.now)
    assert resolved.title == "RESOLVED stripe: error rate"
    assert resolved.message == "error rate 1.0% over 5m, below 5%", "the measurement that resolved it"
    assert alerter.active() == []
    [past] = alerter.history()
    assert (past.id, past.resolved_at, past.value) == (resolved.incident, wall.now, 0.2), "keeps the firing value"
    assert [n.state for n in recorder.sent] == ["firing", "resolved"]


def test_a_flapping_condition_keeps_one_incident_and_notifies_once_each_way(
    alerter: Alerter, recorder: Recorder, wall: Wall
) -> None:
    for step in range(40):  # fires every other evaluation for ten minutes
        alerter.evaluate([error_rate(0.2 if step % 2 == 0 else 0.01)])
        wall.now += 15
    assert recorder.states() == [("firing", "stripe", "error_rate")]
    assert len(alerter.active()) == 1
    wall.now += 300
    alerter.evaluate([error_rate(0.01)])  # first quiet reading after the flapping: the quiet period starts anew
    wall.now += 120
    alerter.evaluate([error_rate(0.01)])
    assert [n.state for n in recorder.sent] == ["firing", "resolved"]


def test_firing_again_within_resolve_after_restarts_the_quiet_period(alerter: Alerter, wall: Wall) -> None:
    alerter.evaluate([error_rate(0.2)])
    wall.now += 100
    alerter.evaluate([error_rate(0.01)])  # quiet since T0+100
    wall.now += 100
    alerter.evaluate([error_rate(0.2)])  # fires again: quiet period forgotten
    wall.now += 10
    assert alerter.evaluate([error_rate(0.01)]) == []  # quiet since T0+210
    wall.now += 119
    assert alerter.evaluate([error_rate(0.01)]) == []
    wall.now += 1
    assert [n.state for n in alerter.evaluate([error_rate(0.01)])] == ["resolved"]


def test_with_resolve_after_zero_the_first_quiet_reading_resolves(store: Store, recorder: Recorder, wall: Wall) -> None:
    alerter = Alerter(store, [recorder], resolve_after=0, wall=wall)
    alerter.evaluate([error_rate(0.2)])
    wall.now += 15
    [resolved] = alerter.evaluate([error_rate(0.01)])
    assert (resolved.state, resolved.resolved_at) == ("resolved", T0 + 15)


def test_a_new_fire_after_resolution_is_a_new_incident(alerter: Alerter, recorder: Recorder, wall: Wall) -> None:
    first = alerter.evaluate([error_rate(0.2)])[0].incident
    wall.now += 200
    alerter.evaluate([error_rate(0.01)])
    wall.now += 200
    alerter.evaluate([error_rate(0.01)])
    wall.now += 60
    second = alerter.evaluate([error_rate(0.2)])[0].incident
    assert second != first
    assert [n.state for n in recorder.sent] == ["firing", "resolved", "firing"]
    assert [incident.id for incident in alerter.active()] == [second]
    assert [incident.id for incident in alerter.history()] == [first]


def test_conditions_left_out_of_a_round_leave_their_incidents_alone(alerter: Alerter, wall: Wall) -> None:
    circuit = Condition("github", "circuit_open", True, None, None, "circuit breaker open")
    alerter.evaluate([error_rate(0.2), circuit])
    for _ in range(20):
        wall.now += 60
        alerter.evaluate([error_rate(0.01)])  # github is not measured: its incident stays open
    assert [(i.integration, i.rule) for i in alerter.active()] == [("github", "circuit_open")]
    assert alerter.evaluate([]) == []


def test_a_quiet_condition_without_an_incident_changes_nothing(alerter: Alerter, recorder: Recorder) -> None:
    assert alerter.evaluate([error_rate(0.01), error_rate(0.0, "github")]) == []
    assert alerter.active() == alerter.history() == []
    assert recorder.sent == []


def test_incidents_are_per_integration_and_rule(alerter: Alerter, recorder: Recorder) -> None:
    slow = Condition("stripe", "latency_p95", True, 4.2, 3.0, "p95 latency 4.2s over 5m, above 3s")
    expiring = Condition("github", "tls_expiry", True, "2026-12-01", "14d", "certificate expires 2026-12-01")
    alerter.evaluate([error_rate(0.2), slow, expiring, error_rate(0.3, "github")])
    assert sorted(recorder.states()) == [
        ("firing", "github", "error_rate"),
        ("firing", "github", "tls_expiry"),
        ("firing", "stripe", "error_rate"),
        ("firing", "stripe", "latency_p95"),
    ]
    values = {(i.integration, i.rule): (i.value, i.threshold) for i in alerter.active()}
    assert values[("github", "tls_expiry")] == ("2026-12-01", "14d"), "text values come back as text"
    assert values[("stripe", "latency_p95")] == (4.2, 3.0)


def test_the_last_reading_of_a_rule_in_one_round_wins(alerter: Alerter, recorder: Recorder) -> None:
    assert alerter.evaluate([error_rate(0.2), error_rate(0.01)]) == []
    assert alerter.evaluate([error_rate(0.01), error_rate(0.2)])[0].value == 0.2


def test_history_is_newest_first_and_limited(alerter: Alerter, wall: Wall) -> None:
    for name in ("a", "b", "c"):
        alerter.evaluate([error_rate(0.2, name)])
        wall.now += 10
        alerter.evaluate([error_rate(0.01, name)])
        wall.now += 200
        alerter.evaluate([error_rate(0.01, name)])
    assert [i.integration for i in alerter.history()] == ["c", "b", "a"]
    assert [i.integration for i in alerter.history(limit=2)] == ["c", "b"]
    assert alerter.purge(resolved_before=wall.now - 200) == 2
    assert [i.integration for i in alerter.history()] == ["c"]


def test_a_failing_notifier_is_retried_logged_and_never_stops_the_others(
    store: Store, recorder: Recorder, wall: Wall, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    broken, flaky = Flaky(failures=100), Flaky(failures=1)
    alerter = Alerter(store, [broken, flaky, recorder], resolve_after=60, wall=wall, sleep=waits.append)
    with caplog.at_level(logging.WARNING, logger="tether.alerts"):
        [sent] = alerter.evaluate([error_rate(0.2)])
    assert broken.calls == 3, "tried, then retried twice"
    assert waits == [1.0, 3.0, 1.0], "short backoff for the broken one, one retry for the flaky one"
    assert (flaky.calls, recorder.sent) == (2, [sent])
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage().startswith("flaky notifier failed 3 times; firing of FIRING stripe: error rate")
    assert alerter.active(), "the incident is open even though one channel failed"


def test_a_notifier_that_raises_something_unexpected_is_contained(store: Store, wall: Wall) -> None:
    class Broken:
        name = "broken"

        def send(self, notification: Notification) -> None:
            raise RuntimeError("bug in a notifier")

    alerter = Alerter(store, [Broken()], resolve_after=60, wall=wall, sleep=lambda _: None)
    assert [n.state for n in alerter.evaluate([error_rate(0.2)])] == ["firing"]


def test_resolve_after_must_not_be_negative(store: Store) -> None:
    with pytest.raises(ValueError, match="resolve_after"):
        Alerter(store, [], resolve_after=-1)


def test_from_config_builds_the_notifiers_of_the_alerts_table(store: Store) -> None:
    config = AlertsConfig.model_validate(
        {"resolve_after": "5m", "notify": [{"type": "log"}, {"type": "webhook", "url": "http://127.0.0.1:9/hook"}]}
    )
    alerter = Alerter.from_config(store, config)
    assert alerter.resolve_after == 300
    assert [type(n) for n in alerter.notifiers] == [LogNotify, WebhookNotify]


# --- several instances on one store ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_instances_sharing_a_store_send_one_notification_per_transition(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two alerters, each with its own store (own connections, as two ``tether serve`` would), evaluate the
    same readings at the same moment, round after round; every transition is notified exactly once."""
    stores = [open_store(kind, request, tmp_path) for _ in range(2)]
    recorder, wall = Recorder(), Wall()
    alerters = [Alerter(each, [recorder], resolve_after=30, wall=wall) for each in stores]
    names = [f"api{index}" for index in range(6)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(alerter: Alerter, readings: list[Condition]) -> None:
        try:
            barrier.wait(timeout=10)
            alerter.evaluate(readings)
        except BaseException as exc:
            errors.append(exc)

    try:
        for round_ in range(12):  # firing for 4 rounds, then quiet: each api fires once and resolves once
            readings = [error_rate(0.2 if round_ < 4 else 0.01, name) for name in names]
            threads = [threading.Thread(target=run, args=(alerter, readings)) for alerter in alerters]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=20)
            wall.now += 15
        assert errors == []
        states = sorted(recorder.states())
        assert states == sorted(
            [("firing", n, "error_rate") for n in names] + [("resolved", n, "error_rate") for n in names]
        )
        assert len(alerters[0].history()) == len(names)
    finally:
        for each in stores:
            each.close()


# --- tether alerts list ---------------------------------------------------------------------------------------


def test_alerts_list_shows_open_then_resolved_incidents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    config = tmp_path / "tether.toml"
    config.write_text(f'store = "sqlite:///{tmp_path / "tether.db"}"\n[alerts]\nresolve_after = "1m"\n')
    store = SqliteStore(tmp_path / "tether.db")
    wall = Wall()
    alerter = Alerter(store, [], resolve_after=60, wall=wall)
    alerter.evaluate([error_rate(0.2, "github"), error_rate(0.4, "stripe")])
    wall.now += 61
    alerter.evaluate([error_rate(0.01, "github")])
    wall.now += 61
    alerter.evaluate([error_rate(0.01, "github")])
    store.close()

    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    shown = runner.invoke(alerts, ["list"], obj={"config": str(config)})
    assert shown.exit_code == 0, shown.output
    open_part, _, resolved_part = shown.output.partition("Recently resolved")
    assert "error rate 40.0% over 5m, above 5%" in open_part
    assert "stripe" in open_part
    assert "github" not in open_part
    assert "github" in resolved_part

    as_json = runner.invoke(alerts, ["list", "--json"], obj={"config": str(config)})
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.stdout)
    assert [i["integration"] for i in listed["active"]] == ["stripe"]
    [resolved] = listed["resolved"]
    assert (resolved["integration"], resolved["value"]) == ("github", 0.2)
    assert resolved["started_at"] == "2027-01-15T08:00:00Z"
    assert resolved["resolved_at"] == "2027-01-15T08:02:02Z"


def test_alerts_list_with_no_incidents_says_so(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    config.write_text(f'store = "sqlite:///{tmp_path / "tether.db"}"\n')
    shown = CliRunner().invoke(alerts, ["list"], obj={"config": str(config)})
    assert shown.exit_code == 0, shown.output
    assert "no open incidents" in shown.output
