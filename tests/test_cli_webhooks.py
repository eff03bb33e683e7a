"""``tether webhooks list|show|replay`` over a real inbox (SQLite, and PostgreSQL for replay).

The inbox is filled through the real :class:`~tether.webhooks.inbox.Inbox` API; the commands run through typer's
runner on ``tether.cli.app``, or as the installed console script where a terminal (or its absence) matters.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import tether
from store_fixtures import PostgresSpace
from tether.cli import app
from tether.cli.webhooks import _since
from tether.webhooks.inbox import Incoming, StoredEvent
from webhook_fixtures import GITHUB_SECRET, STRIPE_SECRET

TETHER = Path(sys.executable).parent / "tether"
NOW = time.time()
HOUR = 3600.0


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)


def write_config(tmp_path: Path, store: str | None = None) -> Path:
    """``stripe`` and ``github`` receive webhooks; ``plain`` does not."""
    path = tmp_path / "tether.toml"
    path.write_text(
        f"""
store = "{store or f"sqlite:///{tmp_path / 'tether.db'}"}"

[integrations.stripe]
base_url = "https://api.stripe.com"
[integrations.stripe.webhooks]
scheme = "stripe"
secret = "${{STRIPE_WEBHOOK_SECRET}}"

[integrations.github]
base_url = "https://api.github.com"
[integrations.github.webhooks]
scheme = "github"
secret = "${{GITHUB_WEBHOOK_SECRET}}"

[integrations.plain]
base_url = "https://api.example.com"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def incoming(
    event_id: str, integration: str = "stripe", *, hours_ago: float = 0.0, body: bytes | None = None
) -> Incoming:
    payload = body if body is not None else json.dumps({"id": event_id, "object": "event"}).encode()
    headers = {"content-type": "application/json", "user-agent": "Stripe/1.0"}
    return Incoming(integration, event_id, "invoice.paid", headers, payload, NOW - hours_ago * HOUR)


def fill(config: Path, events: list[Incoming], *, dead: int = 0, done: int = 0) -> None:
    """Add ``events``, then take the oldest ``dead`` of them to dead-letter and the next ``done`` to done."""
    with tether.Hub.from_config(config) as hub:
        inbox = hub.inbox
        inbox.add(events)
        names = {event.integration for event in events}
        for claimed in inbox.claim("test", names, limit=dead, lease=30) if dead else []:
            assert inbox.fail(claimed.id, "test", f"HTTP 500 from handler (key {STRIPE_SECRET})", retry_in=None)
        for claimed in inbox.claim("test", names, limit=done, lease=30) if done else []:
            assert inbox.complete(claimed.id, "test")


def stored(config: Path) -> dict[str, StoredEvent]:
    """Every event in the inbox by its event id."""
    with tether.Hub.from_config(config) as hub:
        return {event.event_id: event for event in hub.inbox.events(limit=10_000)}


def run(config: Path, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "250", "FORCE_COLOR": None, "NO_COLOR": "1"})
    return runner.invoke(app, ["--config", str(config), "webhooks", *args])


def run_json(config: Path, *args: str) -> Any:
    result = run(config, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def parse_utc(text: str) -> float:
    assert text.endswith("Z")
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture
def mixed(config: Path) -> Path:
    """stripe: evt_0 (5h ago) and evt_1 (4h) dead, evt_2 (3h) done, evt_3 (2h) and evt_4 (now) pending;
    github: gh_0 (1h ago) pending."""
    hours = {"evt_0": 5, "evt_1": 4, "evt_2": 3, "evt_3": 2, "evt_4": 0}
    fill(config, [incoming(name, hours_ago=ago) for name, ago in hours.items()], dead=2, done=1)
    fill(config, [incoming("gh_0", "github", hours_ago=1)])
    return config


# --- list -------------------------------------------------------------------------------------------------------


def test_list_shows_the_newest_event_first_and_the_counts_per_integration(mixed: Path) -> None:
    result = run(mixed, "list")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    order = [name for line in lines for name in ("gh_0", "evt_4", "evt_0") if f" {name} " in line]
    assert order == ["gh_0", "evt_4", "evt_0"]
    [dead_row] = [line for line in lines if " evt_0 " in line]
    for shown in ("stripe", "invoice.paid", "dead", "HTTP 500 from handler (key ***)"):
        assert shown in dead_row
    received = datetime.fromtimestamp(NOW - 5 * HOUR).strftime("%Y-%m-%d %H:%M:%S")
    assert received in dead_row, "received in local time"
    assert "github: 1 pending, 0 processing, 0 done, 0 dead" in result.stdout
    assert "stripe: 2 pending, 0 processing, 1 done, 2 dead" in result.stdout
    assert STRIPE_SECRET not in result.stdout


def test_list_json_is_a_list_with_iso_8601_utc_timestamps(mixed: Path) -> None:
    events = run_json(mixed, "list")

    assert [event["event_id"] for event in events] == ["gh_0", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    dead = events[-1]
    assert (dead["status"], dead["attempts"], dead["integration"]) == ("dead", 1, "stripe")
    assert abs(parse_utc(dead["received_at"]) - (NOW - 5 * HOUR)) < 0.01
    assert (dead["due_at"], dead["completed_at"]) == (None, None)
    assert dead["last_error"] == "HTTP 500 from handler (key ***)"
    done = events[3]
    assert done["status"] == "done"
    assert abs(parse_utc(done["completed_at"]) - time.time()) < 60


def test_list_filters_by_status_integration_since_and_limit(mixed: Path) -> None:
    def ids(*args: str) -> list[str]:
        return [event["event_id"] for event in run_json(mixed, "list", *args)]

    assert ids("--status", "dead") == ["evt_1", "evt_0"]
    assert ids("--integration", "github") == ["gh_0"]
    assert ids("--since", "2h30m") == ["gh_0", "evt_4", "evt_3"]
    assert ids("--since", "3h30m", "--integration", "stripe", "--status", "pending") == ["evt_4", "evt_3"]
    assert ids("--limit", "2") == ["gh_0", "evt_4"]


def test_list_of_one_integration_summarises_only_that_one(mixed: Path) -> None:
    result = run(mixed, "list", "--integration", "github")

    assert result.exit_code == 0
    assert "github: 1 pending" in result.stdout
    assert "stripe:" not in result.stdout


def test_list_says_so_when_the_inbox_is_empty(config: Path) -> None:
    result = run(config, "list")

    assert result.exit_code == 0
    assert "the inbox is empty" in result.stdout
    assert run_json(config, "list") == []


def test_list_refuses_an_integration_without_a_webhooks_table(config: Path) -> None:
    result = run(config, "list", "--integration", "plain")

    assert result.exit_code == 1
    assert "integration 'plain' has no [integrations.plain.webhooks] table" in " ".join(result.stderr.split())


def test_list_names_an_unknown_integration(config: Path) -> None:
    result = run(config, "list", "--integration", "nope")

    assert result.exit_code == 1
    assert "no integration named 'nope'" in result.stderr


def test_list_rejects_a_bad_status_or_time(config: Path) -> None:
    assert run(config, "list", "--status", "failed").exit_code == 2
    result = run(config, "list", "--since", "yesterday")
    assert result.exit_code == 2
    assert "ISO-8601" in result.stderr


def test_a_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = run(tmp_path / "missing.toml", "list")

    assert result.exit_code == 1
    assert "missing.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_that_fails_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tether.db").write_bytes(b"not a database, " * 100)

    result = run(write_config(tmp_path), "list")

    assert result.exit_code == 1
    assert "the store failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_postgresql_store_is_a_clear_error(tmp_path: Path, unused_port: int) -> None:
    config = write_config(tmp_path, store=f"postgresql://postgres@127.0.0.1:{unused_port}/none?connect_timeout=1")

    result = run(config, "replay", "--dead", "--yes")

    assert result.exit_code == 1
    assert "the store failed" in result.stderr
    assert "Traceback" not in result.stderr


# --- since ------------------------------------------------------------------------------------------------------


def test_since_reads_iso_dates_and_times_in_local_time_and_durations_before_now() -> None:
    assert _since("2026-11-23") == datetime(2026, 11, 23).timestamp()
    assert _since("2026-11-23T14:05") == datetime(2026, 11, 23, 14, 5).timestamp()
    assert _since("2026-11-23T14:05:00Z") == datetime.fromisoformat("2026-11-23T14:05:00+00:00").timestamp()
    for text, seconds in (("1h", HOUR), ("30m", 1800.0), ("2d", 2 * 86400.0), ("1h30m", 5400.0)):
        since = _since(text)
        assert since is not None
        assert abs(since - (time.time() - seconds)) < 5
    assert _since(None) is None


# --- show -------------------------------------------------------------------------------------------------------


def test_show_prints_headers_and_a_pretty_printed_json_body_with_secrets_masked(config: Path) -> None:
    body = json.dumps({"id": "evt_9", "data": {"note": f"leaked {STRIPE_SECRET}", "tags": ["[bold]x[/bold]"]}})
    fill(config, [incoming("evt_9", body=body.encode())])
    [event] = stored(config).values()

    result = run(config, "show", str(event.id))

    assert result.exit_code == 0, result.stderr
    assert f"event {event.id} of stripe: evt_9" in result.stdout
    assert "content-type: application/json" in result.stdout
    assert '  "data": {\n    "note": "leaked ***",' in result.stdout
    assert "[bold]x[/bold]" in result.stdout, "brackets in a body are printed, not read as markup"
    assert STRIPE_SECRET not in result.stdout


def test_show_escapes_bytes_that_are_not_utf8(config: Path) -> None:
    fill(config, [incoming("evt_bin", body=b"caf\xe9 \xff ok")])
    [event] = stored(config).values()

    result = run(config, "show", str(event.id))

    assert result.exit_code == 0
    assert "caf\\xe9 \\xff ok" in result.stdout


def test_show_json_gives_text_bodies_as_text_and_others_in_base64(config: Path) -> None:
    fill(
        config,
        [incoming("evt_text", body=b"plain words"), incoming("evt_bin", body=b"\xff\x00" + STRIPE_SECRET.encode())],
    )
    events = stored(config)

    text = run_json(config, "show", str(events["evt_text"].id))
    binary = run_json(config, "show", str(events["evt_bin"].id))
    bare = run_json(config, "show", str(events["evt_bin"].id), "--no-body")

    assert (text["body"], text["body_base64"]) == ("plain words", False)
    assert text["headers"] == {"content-type": "application/json", "user-agent": "Stripe/1.0"}
    assert parse_utc(text["received_at"]) == pytest.approx(NOW, abs=0.01)
    assert binary["body_base64"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00***", "a secret in a binary body is masked too"
    assert "body" not in bare
    assert bare["event_id"] == "evt_bin"


def test_show_without_the_body(config: Path) -> None:
    fill(config, [incoming("evt_1", body=b'{"marker": "in the body"}')])
    [event] = stored(config).values()

    result = run(config, "show", str(event.id), "--no-body")

    assert result.exit_code == 0
    assert "content-type" in result.stdout
    assert "in the body" not in result.stdout


def test_show_an_unknown_id_exits_1(config: Path) -> None:
    result = run(config, "show", "404")

    assert result.exit_code == 1
    assert "no event with id 404 in the inbox" in result.stderr


# --- replay -----------------------------------------------------------------------------------------------------


def test_replay_by_id_makes_dead_and_done_events_pending_with_zero_attempts(mixed: Path) -> None:
    before = stored(mixed)

    result = run(mixed, "replay", str(before["evt_0"].id), str(before["evt_2"].id))

    assert result.exit_code == 0, result.stderr
    assert "replayed 2 events" in result.stdout
    assert "tether serve" in result.stdout
    after = stored(mixed)
    for name in ("evt_0", "evt_2"):
        assert (after[name].status, after[name].attempts, after[name].last_error) == ("pending", 0, None)
        assert after[name].completed_at is None
        assert after[name].due_at is not None
        assert after[name].due_at <= time.time()
    assert after["evt_1"].status == "dead", "events not named are left alone"


def test_replay_by_id_with_an_integration_leaves_the_events_of_others_alone(mixed: Path) -> None:
    before = stored(mixed)

    result = run(mixed, "replay", str(before["evt_0"].id), str(before["gh_0"].id), "--integration", "stripe")

    assert result.exit_code == 0, result.stderr
    assert f"left alone: event {before['gh_0'].id} belongs to github" in result.stdout
    assert "replayed 1 event:" in result.stdout
    after = stored(mixed)
    assert after["evt_0"].status == "pending"
    assert after["gh_0"] == before["gh_0"]


def test_replay_of_an_unknown_id_replays_nothing(mixed: Path) -> None:
    known = stored(mixed)["evt_0"].id

    result = run(mixed, "replay", str(known), "9999")

    assert result.exit_code == 1
    assert "no event with id 9999 in the inbox" in result.stderr
    assert stored(mixed)["evt_0"].status == "dead"


def test_replay_dead_replays_only_dead_events(mixed: Path) -> None:
    before = stored(mixed)

    result = run(mixed, "replay", "--dead", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "2 events will be replayed (2 dead)" in result.stdout
    assert "replayed 2 events" in result.stdout
    after = stored(mixed)
    assert [after[name].status for name in ("evt_0", "evt_1")] == ["pending", "pending"]
    assert after["evt_0"].attempts == after["evt_1"].attempts == 0
    for name in ("evt_2", "evt_3", "evt_4", "gh_0"):
        assert after[name] == before[name]


def test_replay_dead_of_one_integration(config: Path) -> None:
    fill(config, [incoming("evt_1")], dead=1)
    fill(config, [incoming("gh_1", "github")], dead=1)

    result = run(config, "replay", "--dead", "--integration", "github", "--yes")

    assert result.exit_code == 0, result.stderr
    after = stored(config)
    assert (after["gh_1"].status, after["evt_1"].status) == ("pending", "dead")


def test_replay_since_takes_only_events_received_since_then(mixed: Path) -> None:
    result = run(mixed, "replay", "--since", "3h30m", "--integration", "stripe", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "3 events will be replayed (1 done, 2 pending)" in result.stdout
    after = stored(mixed)
    assert (after["evt_0"].status, after["evt_1"].status) == ("dead", "dead"), "received before --since"
    assert after["evt_2"].status == "pending"


def test_replay_since_an_iso_time_with_dead_takes_the_dead_received_since_then(mixed: Path) -> None:
    since = (datetime.now() - timedelta(hours=4, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")

    result = run(mixed, "replay", "--dead", "--since", since, "--yes")

    assert result.exit_code == 0, result.stderr
    after = stored(mixed)
    assert (after["evt_0"].status, after["evt_1"].status) == ("dead", "pending")
    assert after["evt_2"].status == "done"


def test_replay_leaves_an_event_being_processed_alone(config: Path) -> None:
    fill(config, [incoming("evt_old", hours_ago=1), incoming("evt_busy")], dead=1)
    with tether.Hub.from_config(config) as hub:
        [busy] = hub.inbox.claim("worker", ["stripe"], limit=1, lease=300)

    bulk = run(config, "replay", "--since", "2h", "--yes")
    by_id = run(config, "replay", str(busy.id))

    assert bulk.exit_code == 0, bulk.stderr
    assert "1 event being processed right now will be left alone" in bulk.stdout
    assert "replayed 1 event:" in bulk.stdout
    assert f"not replayed, being processed right now: {busy.id}" in by_id.stdout
    assert "no events to replay" in by_id.stdout
    after = stored(config)
    assert (after["evt_busy"].status, after["evt_busy"].attempts) == ("processing", 1)
    assert after["evt_old"].status == "pending"


def test_replay_goes_through_many_events_in_chunks(config: Path) -> None:
    fill(config, [incoming(f"evt_{n:03}", hours_ago=n / 100) for n in range(250)], dead=250)

    result = run(config, "replay", "--dead", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "replayed 250 events" in result.stdout
    assert {event.status for event in stored(config).values()} == {"pending"}


def test_replay_with_nothing_matching_replays_nothing(config: Path) -> None:
    fill(config, [incoming("evt_1")])

    result = run(config, "replay", "--dead")

    assert result.exit_code == 0
    assert "no events to replay" in result.stdout


def test_replay_needs_a_selection_and_only_one_kind(config: Path) -> None:
    nothing = run(config, "replay")
    both = run(config, "replay", "1", "--dead")

    assert nothing.exit_code == both.exit_code == 1
    assert "inbox ids, --since TIME or --dead" in nothing.stderr
    assert "not both" in both.stderr


def test_replay_refuses_an_integration_without_a_webhooks_table(mixed: Path) -> None:
    result = run(mixed, "replay", "--dead", "--integration", "plain", "--yes")

    assert result.exit_code == 1
    assert "receives no webhooks" in " ".join(result.stderr.split())
    assert stored(mixed)["evt_0"].status == "dead"


def test_bulk_replay_without_a_terminal_requires_yes(mixed: Path) -> None:
    done = subprocess.run(
        [TETHER, "--config", mixed, "webhooks", "replay", "--dead"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )

    assert done.returncode == 1
    assert "2 events will be replayed" in done.stdout
    assert "stdin is not a terminal, pass --yes" in done.stderr
    assert stored(mixed)["evt_0"].status == "dead"


def on_a_terminal(config: Path, answer: str, *args: str) -> tuple[int, str]:
    """Run the console script with a pseudo-terminal for stdin/stdout/stderr, typing ``answer`` at the prompt."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [TETHER, "--config", config, "webhooks", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "200", "TERM": "xterm", "NO_COLOR": "1"},
    )
    os.close(follower)
    output = b""
    answered = False
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, f"no output for 30s: {output!r}"
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the process exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(leader, answer.encode() + b"\n")
                answered = True
        return process.wait(30), output.decode(errors="replace")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()


def test_bulk_replay_on_a_terminal_asks_first(mixed: Path) -> None:
    declined, said_no = on_a_terminal(mixed, "n", "replay", "--dead")
    assert stored(mixed)["evt_0"].status == "dead"

    accepted, said_yes = on_a_terminal(mixed, "y", "replay", "--dead")

    assert declined == 1
    assert "Replay 2 events? [y/N]" in said_no
    assert "nothing replayed" in said_no
    assert accepted == 0, said_yes
    assert "replayed 2 events" in said_yes
    assert "replaying" in said_yes
    assert "2/2" in said_yes, "the progress bar reached the end"
    assert stored(mixed)["evt_0"].status == "pending"


# --- PostgreSQL -------------------------------------------------------------------------------------------------


@pytest.fixture
def postgres_config(postgres: PostgresSpace, tmp_path: Path) -> Path:
    return write_config(tmp_path, store=postgres.url)


def test_replay_dead_on_postgresql(postgres_config: Path, postgres: PostgresSpace) -> None:
    fill(postgres_config, [incoming(f"evt_{n}", hours_ago=n) for n in range(3, 0, -1)], dead=2, done=1)

    result = run(postgres_config, "replay", "--dead", "--yes")
    listed = run_json(postgres_config, "list", "--status", "pending")

    assert result.exit_code == 0, result.stderr
    assert "replayed 2 events" in result.stdout
    assert [event["event_id"] for event in listed] == ["evt_2", "evt_3"]
    assert all(event["attempts"] == 0 for event in listed)
    rows = postgres.rows("SELECT event_id, status FROM tether_webhook_events ORDER BY event_id")
    assert rows == [("evt_1", "done"), ("evt_2", "pending"), ("evt_3", "pending")]
