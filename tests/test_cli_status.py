"""``tether status``: the health every process recorded, in a table and as JSON; exit 1 while an alert is open."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tether
from tether.cli import app
from tether.observe.incidents import Alerter, Condition
from tether.observe.records import CallRecord

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(
        """
        store = "sqlite:///tether.db"
        [integrations.pay]
        base_url = "https://api.pay.test"
        rate_limit = "10/s"
        [integrations.mail]
        base_url = "https://api.mail.test"
        """
    )
    now = time.time()
    with tether.Hub.from_config(path) as hub:
        records = [CallRecord(now - 30, "pay", "GET", "/v1/charges", 200, "success", latency=0.12) for _ in range(18)]
        records += [
            CallRecord(
                now - 20,
                "pay",
                "POST",
                "/v1/charges",
                503,
                "attempts exhausted",
                error="ServerError",
                hint="the API failed on its side; retry later",
                latency=1.5,
                attempts=4,
            )
            for _ in range(2)
        ]
        hub.call_log.write(records)
    return path


def test_status_shows_each_integrations_numbers(config: Path) -> None:
    result = runner.invoke(app, ["--config", str(config), "status"])

    assert result.exit_code == 0, result.output
    pay = [cell.strip() for cell in next(line for line in result.output.splitlines() if "│ pay" in line).split("│")]
    assert pay[1:5] == ["pay", "20", "10.0%", "183 ms"], "20 requests, 2 failed, p50 interpolated in 100-250 ms"
    assert pay[7] == "closed"
    mail = [cell.strip() for cell in next(line for line in result.output.splitlines() if "│ mail" in line).split("│")]
    assert mail[1:4] == ["mail", "0", "-"]
    assert "POST /v1/charges: 503 — the API failed on its side; retry later" in result.output


def test_status_json_has_the_dashboards_fields(config: Path) -> None:
    result = runner.invoke(app, ["--config", str(config), "status", "--json", "pay"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [pay] = data["integrations"]
    assert (pay["name"], pay["requests"], pay["failures"]) == ("pay", 20, 2)
    assert pay["error_rate"] == pytest.approx(0.1)
    assert 0.1 <= pay["p50"] <= 0.25
    assert pay["rate_limit"] == "10/s"
    assert pay["errors"][0]["hint"] == "the API failed on its side; retry later"
    assert len(pay["series"]["t"]) == 60


def test_status_exits_1_and_names_the_alert_while_one_is_open(config: Path) -> None:
    with tether.Hub.from_config(config) as hub:
        Alerter(hub.store, [], resolve_after=0).evaluate(
            [Condition("pay", "error_rate", True, 0.1, 0.05, "error rate 10.0% over 5m (2 of 20 calls), above 5%")]
        )

    result = runner.invoke(app, ["--config", str(config), "status"])

    assert result.exit_code == 1
    assert "pay error_rate: error rate 10.0% over 5m" in " ".join(result.output.split())


def test_status_refuses_an_unknown_integration_and_a_bad_window(config: Path) -> None:
    unknown = runner.invoke(app, ["--config", str(config), "status", "nope"])
    assert unknown.exit_code == 1
    assert "configured: mail, pay" in unknown.output

    bad = runner.invoke(app, ["--config", str(config), "status", "--window", "soon"])
    assert bad.exit_code == 2
    assert "--window" in bad.output


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--json"], ["doctor", "--from-log"], ["alerts", "list"], ["webhooks", "list"]]
)
def test_a_store_that_is_down_is_a_message_with_a_hint_not_a_traceback(
    tmp_path: Path, unused_port: int, command: list[str]
) -> None:
    config = tmp_path / "tether.toml"
    config.write_text(
        f'store = "postgresql://tether@127.0.0.1:{unused_port}/tether"\n'
        '[integrations.pay]\nbase_url = "https://api.pay.test"\n'
        '[integrations.pay.webhooks]\nscheme = "github"\nsecret = "${PAY_HOOK_SECRET}"\n'
    )
    result = runner.invoke(app, ["--config", str(config), *command], env={"PAY_HOOK_SECRET": "hook-secret"})

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "the store failed" in result.output
    assert "check `store` in tether.toml" in result.output
